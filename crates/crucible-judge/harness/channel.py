# Crucible's checker channel: how Python values cross between the checker (which holds
# the tests) and the program (which holds the submission). The judge puts this file in
# front of both the program harness (python.py) and the checker (checker.py), so each
# process has its own copy and neither imports anything the other can touch.
#
# Framing: each message is a 4-byte big-endian length, then that many bytes of JSON.
#
# Values (the codec): None, bool, str, list and finite floats are JSON itself; ints are
# JSON up to 2**63 and a hex tag beyond (no decimal conversion limit applies); everything
# else is a tagged object {"$": TAG, "v": ...}:
#   t tuple, d dict (list of [key, value]), s set, fs frozenset, b bytes (hex),
#   ba bytearray (hex), f float nan/inf/-inf, i big int (hex), c complex [re, im],
#   r range [start, stop, step], it an iterator or generator (its items, materialised),
#   ty a builtin type (by name), m a standard-library module (by name, imported by
#   the receiver), h a handle: an object that cannot cross as a value, kept by the program (v: its id,
#   n: its type's name).
# The decoder only ever builds builtin values (and, in the checker, its own Handle
# objects), so nothing a submission defines exists on the checker's side.
import builtins as _builtins
import json
import struct
import sys as _sys

_HEADER = struct.Struct(">I")
# Largest message either side accepts; a program that sends more breaks the protocol.
MESSAGE_MAX = 64 << 20
_BIG = 1 << 63


class ChannelClosed(Exception):
    """The other side closed the channel (or died)."""


class ProtocolError(Exception):
    """The other side sent something that is not a well-formed message."""


def frame(obj):
    """The bytes of a message holding `obj`."""
    data = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
    return _HEADER.pack(len(data)) + data


def write_all(fd, data):
    view = memoryview(data)
    while view:
        n = _os.write(fd, view)
        view = view[n:]


def send(fd, obj):
    write_all(fd, frame(obj))


# Bytes read past the last message, per descriptor: reading ahead in large chunks takes
# several pipelined answers in one system call.
_buffers = {}


def _read_exact(fd, n):
    buf = _buffers.get(fd)
    if buf is None:
        buf = _buffers[fd] = bytearray()
    while len(buf) < n:
        chunk = _os.read(fd, max(n - len(buf), 1 << 16))
        if not chunk:
            raise ChannelClosed()
        buf += chunk
    data = bytes(buf[:n])
    del buf[:n]
    return data


def recv_raw(fd):
    """The next message's bytes. ChannelClosed at end of stream."""
    try:
        (size,) = _HEADER.unpack(_read_exact(fd, 4))
        if size > MESSAGE_MAX:
            raise ProtocolError("a message of %d bytes (at most %d)" % (size, MESSAGE_MAX))
        return _read_exact(fd, size)
    except OSError as exc:
        raise ChannelClosed() from exc


def _float(x):
    if x != x:
        return {"$": "f", "v": "nan"}
    if x in (_INF, -_INF):
        return {"$": "f", "v": "inf" if x > 0 else "-inf"}
    return x


_INF = float("inf")


def encode(v, handle=None):
    """`v` as JSON-ready data. `handle(v)` gives the handle id of a value that cannot
    cross (None: such a value raises TypeError)."""
    t = type(v)
    if v is None or t is bool or t is str:
        return v
    if t is int:
        return v if -_BIG < v < _BIG else {"$": "i", "v": hex(v)}
    if t is float:
        return _float(v)
    if t is list:
        return [encode(x, handle) for x in v]
    if t is tuple:
        return {"$": "t", "v": [encode(x, handle) for x in v]}
    if t is dict:
        return {"$": "d", "v": [[encode(k, handle), encode(x, handle)] for k, x in v.items()]}
    if t is set or t is frozenset:
        return {"$": "s" if t is set else "fs", "v": [encode(x, handle) for x in v]}
    if t is bytes:
        return {"$": "b", "v": v.hex()}
    if t is bytearray:
        return {"$": "ba", "v": v.hex()}
    if t is complex:
        return {"$": "c", "v": [_float(v.real), _float(v.imag)]}
    if t is range:
        return {"$": "r", "v": [v.start, v.stop, v.step]}
    if t is type and getattr(_builtins, v.__name__, None) is v:
        return {"$": "ty", "v": v.__name__}
    if handle is None:
        raise TypeError("a value of type %s cannot cross the channel" % t.__name__)
    return handle(v)


def _special_float(s):
    if s == "nan":
        return float("nan")
    if s == "inf":
        return _INF
    if s == "-inf":
        return -_INF
    raise ProtocolError("bad float %r" % (s,))


def _int(v):
    if type(v) is not int:
        raise ProtocolError("bad range bound")
    return v


def _module(name):
    # A module crosses by name and is imported on the receiving side: a test that
    # uses a module only the submission imported gets the real one, never the
    # submission's object. Standard-library modules only.
    top = name.partition(".")[0]
    if top not in getattr(_sys, "stdlib_module_names", ()) or top in ("antigravity", "this"):
        raise ProtocolError("module %r is not a standard-library module" % (name,))
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ProtocolError("module %r cannot be imported" % (name,)) from None


def decoder(make_handle):
    """A function from message bytes to the value they hold; `make_handle(id, type_name)`
    builds what a handle decodes to."""

    def num(x):
        if type(x) is dict:
            x = hook(x)
        if type(x) not in (int, float):
            raise ProtocolError("bad complex part")
        return x

    def hook(o):
        tag = o.get("$")
        if tag is None:
            # A message's envelope, or a dict with str keys: plain data either way.
            return o
        v = o.get("v")
        if len(o) > 3:
            raise ProtocolError("a tag with extra fields")
        if tag == "t" and type(v) is list:
            return tuple(v)
        if tag == "d" and type(v) is list:
            out = {}
            for pair in v:
                if type(pair) is not list or len(pair) != 2:
                    raise ProtocolError("bad dict item")
                out[pair[0]] = pair[1]
            return out
        if tag == "s" and type(v) is list:
            return set(v)
        if tag == "fs" and type(v) is list:
            return frozenset(v)
        if tag == "b" and type(v) is str:
            return bytes.fromhex(v)
        if tag == "ba" and type(v) is str:
            return bytearray.fromhex(v)
        if tag == "f" and type(v) is str:
            return _special_float(v)
        if tag == "i" and type(v) is str:
            return int(v, 16)
        if tag == "c" and type(v) is list and len(v) == 2:
            return complex(num(v[0]), num(v[1]))
        if tag == "r" and type(v) is list and len(v) == 3:
            return range(_int(v[0]), _int(v[1]), _int(v[2]))
        if tag == "it" and type(v) is list:
            return iter(v)
        if tag == "ty" and type(v) is str and isinstance(getattr(_builtins, v, None), type):
            return getattr(_builtins, v)
        if tag == "m" and type(v) is str:
            return _module(v)
        if tag == "h" and type(v) is int and type(o.get("n")) is str:
            return make_handle(v, o["n"])
        raise ProtocolError("bad tag %r" % (tag,))

    parse = json.JSONDecoder(object_hook=hook).decode

    def decode(data):
        try:
            return parse(data.decode())
        except ProtocolError:
            raise
        except (ValueError, TypeError, RecursionError, MemoryError) as exc:
            raise ProtocolError("undecodable value: %s" % type(exc).__name__) from None

    return decode


import os as _os  # noqa: E402 - kept last so the names above read as the interface
