# Crucible's Python zygote: a warm interpreter inside a sandbox that forks one isolated
# child per execution. crucible_sandbox::ForkServer starts it as the sandbox's program;
# it never runs submitted code itself, only its children do, after they have left it
# behind (an unprivileged uid, rlimits, the program seccomp filter, a per-exec cgroup the
# host moves them into). Before each fork the zygote enters a fresh IPC namespace and
# mounts a fresh tmpfs on /work, and it unmounts that tmpfs once the child is reaped, so
# nothing one execution leaves there is seen by the next.
#
#   zygote.py --entry FILE [--preload mod,mod,...]
#
# With "in_place" in the init message, the zygote forks nothing: each execution is the
# entry's run_in_place(argv, prepared, stdin, stdout, stderr) called in the zygote
# itself, after it has dropped to the program's ids (for trusted entry points only).
#
# FILE is imported once here (compiled ahead); each child runs its main() with sys.argv
# set from the request, as `python3 FILE ARGS...` would.
#
# Protocol on fd 3, a SOCK_SEQPACKET unix socket, one JSON object per message:
#   host   -> zygote  {"op": "init", "seccomp": HEX, "uid": N, "gid": N}; HEX is the
#                     sock_filter array each child adds to the zygote's own filter; with
#                     descriptors: the exec cgroup's cgroup.procs files, opened by the
#                     host, which each child writes "0" to, to join the cgroup
#   zygote -> host    {"op": "ready"}
#   host   -> zygote  {"op": "exec", "id": N, "argv": [...], "files": [[PATH, SIZE], ...],
#                      "prepare": [PATH, ...], "rlimits": [[RESOURCE, SOFT, HARD], ...],
#                      "work_bytes": N}
#                     with descriptors: stdin, stdout, stderr, payload (a memfd
#                     holding the files' bytes back to back)
#   child  -> host    {"op": "child_error", "id": N, "message": ...} if its set-up fails
#   zygote -> host    {"op": "exit", "id": N, "status": WAIT_STATUS, "utime_us": N,
#                      "stime_us": N, "maxrss_kb": N} once the child is reaped, or
#                     {"op": "error", "id": N, "message": ...} if it could not start it
#
# "prepare" names files that hold only the host's own data, never submitted code. When
# the entry module has prepare(argv, files), the zygote calls it with those files' bytes
# (by path under /work) before forking; if it returns something other than None, the
# child runs main(THAT) instead of main() and those files are not written into its work
# dir. Work done there happens once in the warm zygote instead of in every cold child.
import atexit
import ctypes
import gc
import json
import os
import resource
import signal
import socket
import sys
import types

CLONE_NEWIPC = 0x08000000
MS_NOSUID = 2
MS_NODEV = 4
MNT_DETACH = 2
SYS_CLOSE_RANGE = 436
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_CAPBSET_DROP = 24
SECCOMP_MODE_FILTER = 2
MAX_FDS = 8
_EXIT = b'{"op":"exit","id":%d,"status":%d,"utime_us":%d,"stime_us":%d,"maxrss_kb":%d}'
RLIM_MAX = (1 << 64) - 1

_libc = ctypes.CDLL(None, use_errno=True)
_libc.unshare.argtypes = [ctypes.c_int]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_char_p,
    ctypes.c_ulong,
    ctypes.c_char_p,
]
_libc.prctl.argtypes = [ctypes.c_int] + [ctypes.c_ulong] * 4


class _Prog(ctypes.Structure):
    # struct sock_fprog
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


_sock = socket.socket(fileno=3)
_cgroup_procs = []
_entry = None
# What the entry's prepare() returned for the execution about to be forked, if anything.
_prepared = None
_uid = _gid = None
# Executions run in the zygote itself (a trusted entry point; see ZygoteSpec::in_place).
_in_place = False
_filter = None
_prog = None


def _check(ret, what):
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, "%s: %s" % (what, os.strerror(err)))


def _send(obj):
    _sock.send(json.dumps(obj).encode())


def _recv():
    fds = []
    msg, anc, _flags, _addr = _sock.recvmsg(
        1 << 16, socket.CMSG_SPACE(MAX_FDS * 4), socket.MSG_CMSG_CLOEXEC
    )
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(data) - len(data) % 4
            fds.extend(
                int.from_bytes(data[i : i + 4], sys.byteorder, signed=True)
                for i in range(0, usable, 4)
            )
    if not msg:
        return None, fds
    return json.loads(msg), fds


def _limit(v):
    return resource.RLIM_INFINITY if v >= RLIM_MAX else v


def _exit_code(exc):
    # As CPython's handling of an uncaught SystemExit: None is 0, an int is the code,
    # anything else is printed to stderr and gives 1.
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code if -(1 << 31) <= code < (1 << 31) else -1
    try:
        sys.stderr.write(str(code) + "\n")
    except BaseException:  # noqa: B902 - a broken stderr changes nothing here
        pass
    return 1


def _finish(code, sigint):
    # What CPython does when the main module ends: wait for non-daemon threads, run the
    # atexit handlers, flush the standard streams (a failed stdout flush is exit 120);
    # then leave without the interpreter's finalisation, which a fork does not need.
    threading = sys.modules.get("threading")
    if threading is not None:
        try:
            threading._shutdown()
        except BaseException:  # noqa: B902
            pass
    try:
        atexit._run_exitfuncs()
    except BaseException:  # noqa: B902
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None and not stream.closed:
                stream.flush()
        except BaseException:  # noqa: B902
            if stream is sys.stdout and code == 0:
                code = 120
    if sigint:
        # An uncaught KeyboardInterrupt ends CPython by SIGINT.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    os._exit(code & 0xFF if code >= 0 else code)


def _write_files(files, payload, skip):
    offset = 0
    for path, size in files:
        if path in skip:
            offset += size
            continue
        parent = os.path.dirname(path)
        if parent:
            os.makedirs(parent, 0o755, exist_ok=True)
        fd = os.open(
            path,
            os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o644,
        )
        try:
            left = size
            while left > 0:
                n = os.sendfile(fd, payload, offset, left)
                if n == 0:
                    raise OSError("payload ended early")
                offset += n
                left -= n
        finally:
            os.close(fd)


def _child(req, fds):
    # Runs in the forked child; never returns. Everything up to the last step is our
    # own code; a failure there is reported as the sandbox's, never the program's.
    stdin_fd, out_fd, err_fd, payload = fds
    stage = "starting"
    try:
        stage = "joining the exec cgroup"
        for fd in _cgroup_procs:
            os.write(fd, b"0")
        stage = "entering /work"
        os.chdir("/work")
        stage = "dropping privileges"
        # The bounding set and the supplementary groups are already empty (the zygote
        # cleared both at start); leaving uid 0 for the program's ids drops every
        # capability.
        os.setresgid(_gid, _gid, _gid)
        os.setresuid(_uid, _uid, _uid)
        # A uid change makes a process non-dumpable, which would make its /proc/self
        # root's (no /dev/stdout); and it clears the parent-death signal.
        _check(_libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), "PR_SET_DUMPABLE")
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "PR_SET_PDEATHSIG")
        stage = "writing the program's files"
        _write_files(req["files"], payload, _offered(req) if _prepared is not None else ())
        stage = "setting up stdin/stdout/stderr"
        os.dup2(stdin_fd, 0)
        os.dup2(out_fd, 1)
        os.dup2(err_fd, 2)
        stage = "setting resource limits"
        for res, soft, hard in req["rlimits"]:
            resource.setrlimit(res, (_limit(soft), _limit(hard)))
        stage = "installing the seccomp filter"
        _check(
            _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(_prog), 0, 0),
            "PR_SET_SECCOMP",
        )
        stage = "closing inherited descriptors"
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        _sock.detach()
        if _libc.syscall(SYS_CLOSE_RANGE, 3, 0xFFFFFFFF, 0) != 0:
            os.closerange(3, 1 << 16)
    except BaseException as exc:  # noqa: B902
        try:
            _send({"op": "child_error", "id": req["id"], "message": "%s: %s" % (stage, exc)})
        finally:
            os._exit(125)


def _offered(req):
    return set(req.get("prepare") or ())


def _run_prepare(req, payload):
    # The entry's prepare() over the offered files, or None (no hook, nothing offered, or
    # it failed: then the child does all the work itself, exactly as without a hook).
    offered = _offered(req)
    hook = getattr(_entry, "prepare", None)
    if not offered or hook is None:
        return None
    try:
        contents = {}
        offset = 0
        for path, size in req["files"]:
            if path in offered:
                contents["/work/" + path] = os.pread(payload, size, offset)
            offset += size
        return hook(list(req["argv"]), contents)
    except Exception:  # noqa: B902 - the child then reads the files itself
        return None


def _isolate(req):
    # A fresh IPC namespace (System V objects and message queues die with the previous
    # one) and a fresh work dir for the child.
    _check(_libc.unshare(CLONE_NEWIPC), "unshare")
    opts = "size=%d,mode=0755,uid=%d,gid=%d" % (req["work_bytes"], _uid, _gid)
    _check(
        _libc.mount(b"tmpfs", b"/work", b"tmpfs", MS_NOSUID | MS_NODEV, opts.encode()),
        "mount /work",
    )


def _exec_in_place(req, fds):
    # Runs the entry's run_in_place() here, with the execution's descriptors, and
    # reports its exit status and the CPU time it took. Nothing is forked or mounted.
    stdin_fd, out_fd, err_fd, payload = fds
    status = 0
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    try:
        prepared = _run_prepare(req, payload)
        _entry.run_in_place(list(req["argv"]), prepared, stdin_fd, out_fd, err_fd)
    except BaseException as exc:  # noqa: B902 - reported as the execution's failure
        status = 1 << 8
        try:
            os.write(err_fd, ("%s: %s\n" % (type(exc).__name__, exc)).encode())
        except OSError:
            pass
    finally:
        for fd in fds:
            os.close(fd)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    _sock.send(
        _EXIT
        % (
            req["id"],
            status,
            int((r1.ru_utime - r0.ru_utime) * 1e6),
            int((r1.ru_stime - r0.ru_stime) * 1e6),
            r1.ru_maxrss,
        )
    )


def _exec(req, fds):
    # Returns True in the child, once it is ready to run the entry point; in the zygote,
    # False once the child is reaped and reported.
    def fail(message):
        for fd in fds:
            os.close(fd)
        _send({"op": "error", "id": req.get("id"), "message": message})

    global _prepared
    if len(fds) != 4:
        fail("expected 4 descriptors")
        return False
    if _in_place:
        _exec_in_place(req, fds)
        return False
    try:
        _isolate(req)
    except OSError as exc:
        fail("preparing the child: %s" % exc)
        return False
    _prepared = _run_prepare(req, fds[3])
    try:
        pid = os.fork()
    except OSError as exc:
        _prepared = None
        _libc.umount2(b"/work", MNT_DETACH)
        fail("fork: %s" % exc)
        return False
    if pid == 0:
        _child(req, fds)
        return True
    # Nothing is written here until the child is gone: a page the zygote writes while
    # the child still shares it is copied, one written after is only made writable.
    _, status, ru = os.wait4(pid, 0)
    _prepared = None
    for fd in fds:
        os.close(fd)
    # Formatted rather than json.dumps'd: this runs once per execution, and every object
    # the zygote touches between two forks costs it a page fault.
    _sock.send(
        _EXIT
        % (req["id"], status, int(ru.ru_utime * 1e6), int(ru.ru_stime * 1e6), ru.ru_maxrss)
    )
    # After the report, so the host's work overlaps ours. Anything of the child's still
    # alive is about to be killed by the host; the detach does not wait for it.
    _check(_libc.umount2(b"/work", MNT_DETACH), "umount /work")
    return False


def _drop_bounding_set():
    # Children never execve with privileges (no_new_privs), and dropping from the
    # bounding set leaves the zygote's own effective capabilities (which the drops
    # need: CAP_SETPCAP) alone; an empty bounding set is one more wall.
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            _check(-1, "PR_CAPBSET_DROP")


def _load_entry(path):
    with open(path, "rb") as f:
        code = compile(f.read(), path, "exec")
    module = types.ModuleType("__crucible_entry__")
    module.__file__ = path
    sys.modules[module.__name__] = module
    exec(code, module.__dict__)
    return module


def _serve():
    # The zygote's life: load, then serve requests. Returns only in a child, with the
    # argv its entry point is to see.
    global _entry, _uid, _gid, _filter, _prog, _cgroup_procs, _in_place
    args = sys.argv[1:]
    entry, preload = None, []
    while args:
        flag = args.pop(0)
        if flag == "--entry" and args:
            entry = args.pop(0)
        elif flag == "--preload" and args:
            preload = [m for m in args.pop(0).split(",") if m]
        else:
            sys.stderr.write("zygote: bad argument %r\n" % flag)
            os._exit(2)
    # Never hold the zygote's own work dir: /work is mounted over for each child.
    os.chdir("/")
    init, fds = _recv()
    if not init or init.get("op") != "init" or not fds:
        os._exit(2)
    _cgroup_procs = fds
    _uid, _gid = init["uid"], init["gid"]
    _in_place = bool(init.get("in_place"))
    bpf = bytes.fromhex(init["seccomp"])
    _filter = ctypes.create_string_buffer(bpf, len(bpf))
    _prog = _Prog(len(bpf) // 8, ctypes.addressof(_filter))
    missing = []
    _drop_bounding_set()
    os.setgroups([])
    for name in preload:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if entry is not None:
        _entry = _load_entry(entry)
    # Everything loaded so far is shared with the children and never collected, so
    # their garbage collector does not touch (and copy) those pages.
    if _in_place:
        # Runs happen here, so here is where privileges end: the program's ids, and
        # with them every capability (nothing is forked, mounted or unshared now).
        os.setresgid(_gid, _gid, _gid)
        os.setresuid(_uid, _uid, _uid)
    gc.collect()
    gc.freeze()
    _send({"op": "ready", "missing": missing})
    while True:
        req, fds = _recv()
        if req is None:
            os._exit(0)  # the host closed the socket
        if req.get("op") != "exec":
            for fd in fds:
                os.close(fd)
        elif _exec(req, fds):
            return req["argv"]


if __name__ == "__main__":
    _argv = _serve()
    # Only a child gets here, with the zygote's frames gone, so the entry point runs at
    # the stack depth `python3 ENTRY` gives it (recursion limits hit at the same place).
    sys.argv = list(_argv)
    _entry.__name__ = "__main__"
    sys.modules["__main__"] = _entry
    _code, _sigint = 0, False
    try:
        if _prepared is None:
            _entry.main()
        else:
            _entry.main(_prepared)
    except SystemExit as _exc:
        _code = _exit_code(_exc)
    except BaseException as _exc:  # noqa: B902 - as CPython: print it, exit 1
        _sigint = isinstance(_exc, KeyboardInterrupt)
        try:
            sys.excepthook(type(_exc), _exc, _exc.__traceback__)
        except BaseException:  # noqa: B902
            pass
        _code = 1
    _finish(_code, _sigint)
