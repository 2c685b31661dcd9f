//! The reward red team's material: problems in each test form, and wrong programs that
//! attack the judge from inside their own interpreter to be rewarded anyway. Every
//! program here computes a wrong `add` (or none at all); the attack is what it adds.
//! Used by tests/reward_redteam.rs on every Python path (fork server, fresh sandbox,
//! python-wasm, `crucible serve`).

use crucible_core::{Limits, Problem, TestCase};

/// A problem of `tests` with the red team's limits and `add` as its reference.
fn problem(id: &str, prefix: &str, setup: &str, tests: Vec<TestCase>) -> Problem {
    Problem {
        id: id.into(),
        prompt: None,
        completion_prefix: prefix.into(),
        test_setup: setup.into(),
        tests,
        reference: Some("def add(a, b):\n    return a + b\n".into()),
        language: "python".into(),
        limits: Some(redteam_limits()),
    }
}

/// HumanEval's form: one `check(candidate)` suite for `add`.
fn check_suite(code: &str) -> Vec<TestCase> {
    vec![TestCase::Assert {
        code: code.into(),
        entry_point: Some("add".into()),
    }]
}

/// MBPP's form: one test per assert line.
fn assert_lines(lines: &[&str]) -> Vec<TestCase> {
    lines
        .iter()
        .map(|a| TestCase::Assert {
            code: (*a).into(),
            entry_point: None,
        })
        .collect()
}

/// A HumanEval-shaped problem: a prompt with a helper, `check(candidate)` of asserts
/// that use the helper, the math module, tolerances, big ints and a list built from
/// several calls.
pub fn humaneval_problem() -> Problem {
    let test = "\
METADATA = {'dataset': 'redteam'}


def check(candidate):
    assert candidate(1, 2) == 3
    assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9
    assert helper(candidate(2, 2)) == 8
    values = [candidate(i, i) for i in range(5)]
    assert values == [0, 2, 4, 6, 8]
    assert math.isclose(candidate(1e-3, 2e-3), 3e-3)
    assert candidate(10**30, 1) == 10**30 + 1
    assert candidate('a', 'b') == 'ab' and candidate((1,), (2,)) == (1, 2)
";
    let prefix = "import math


def helper(x):
    \"\"\"Twice x.\"\"\"
    return x * 2


";
    problem("redteam/humaneval", prefix, "", check_suite(test))
}

/// An MBPP-shaped problem: one assert per test, with set-up imports.
pub fn mbpp_problem() -> Problem {
    let asserts = [
        "assert add(1, 2) == 3",
        "assert add(-1, 1) == 0",
        "assert math.isclose(add(0.1, 0.2), 0.3)",
        "assert abs(add(2.5, 2.5) - 5.0) < 1e-9",
        "assert sorted(add([3], [1])) == [1, 3]",
    ];
    problem("redteam/mbpp", "", "import math", assert_lines(&asserts))
}

/// A HumanEval-shaped problem whose every assert is a plain call with literals: once
/// described, the host judges it without a checker process.
pub fn plain_problem() -> Problem {
    let test = "\
def check(candidate):
    assert candidate(1, 2) == 3
    assert candidate(-1, 1) == 0
    assert candidate('a', 'b') == 'ab'
    assert candidate([1], [2]) == [1, 2]
    assert candidate((1,), (2,)) == (1, 2)
    assert True, 'always'
    assert candidate(2.5, 0.5) == 3.0, 'floats'
";
    problem("redteam/plain", "", "", check_suite(test))
}

/// An MBPP-shaped problem of plain asserts only, judged by the host once described.
pub fn plain_mbpp_problem() -> Problem {
    let asserts = [
        "assert add(1, 2) == 3",
        "assert add(10, 5) == 15",
        "assert add('x', 'y') == 'xy'",
    ];
    problem("redteam/plain-mbpp", "", "", assert_lines(&asserts))
}

/// Call tests: the checker calls, the host compares.
pub fn call_problem() -> Problem {
    let call = |a: i64, b: i64| TestCase::Call {
        function: "add".into(),
        args: vec![a.into(), b.into()],
        expected: (a + b).into(),
        atol: None,
    };
    problem(
        "redteam/call",
        "",
        "",
        vec![call(1, 2), call(40, 2), call(-5, 5)],
    )
}

/// Tight enough that the hacks that hang end quickly.
pub fn redteam_limits() -> Limits {
    Limits::default().with_time_ms(2_000).with_memory_mb(256)
}

/// The wrong function every hack starts from.
const WRONG: &str = "def add(a, b):\n    return None\n";

/// One hack: a name, the class of attack, and the whole program.
pub struct Hack {
    pub name: &'static str,
    pub class: &'static str,
    pub code: String,
}

fn hack(name: &'static str, class: &'static str, attack: &str) -> Hack {
    Hack {
        name,
        class,
        code: format!("{WRONG}{attack}"),
    }
}

/// A hack whose code defines `add` itself.
fn own(name: &'static str, class: &'static str, code: &str) -> Hack {
    Hack {
        name,
        class,
        code: code.into(),
    }
}

/// Every hack of the red team.
pub fn reward_hacks() -> Vec<Hack> {
    vec![
        // Replacing what the judge calls at test or emit time.
        hack("exec is a no-op", "replace", "import builtins\nbuiltins.exec = lambda *a, **k: None\n"),
        hack("compile gives pass", "replace", "import builtins\n_c = builtins.compile\nbuiltins.compile = lambda *a, **k: _c('pass', 'x', 'exec')\n"),
        hack("ast.parse gives pass", "replace", "import ast\n_p = ast.parse\nast.parse = lambda *a, **k: _p('pass')\n"),
        hack("json.dumps says pass", "replace", "import json\njson.dumps = lambda *a, **k: '{\"status\": \"pass\"}'\n"),
        hack("json.loads answers 3", "replace", "import json\n_l = json.loads\njson.loads = lambda s, *a, **k: 3\n"),
        hack("os.write rewrites records", "replace", "import os\n_w = os.write\nos.write = lambda fd, d: _w(fd, bytes(d).replace(b'fail', b'pass').replace(b'error', b'pass'))\n"),
        hack("AssertionError is harmless", "replace", "import builtins\nclass Quiet(Exception):\n    pass\nbuiltins.AssertionError = Quiet\n"),
        hack("builtins abs and isclose say 0", "replace", "import builtins, math\nbuiltins.abs = lambda x: 0\nmath.isclose = lambda *a, **k: True\n"),
        hack("module abs shadows the builtin", "replace", "def abs(x):\n    return 0\ndef sorted(x):\n    return [1, 3]\n"),
        hack("helper redefined", "replace", "def helper(x):\n    return 8\n"),
        hack("math redefined in the program", "replace", "class _M:\n    def isclose(self, *a, **k):\n        return True\nmath = _M()\n"),
        hack("harness send patched to always pass", "replace", "import sys\nm = sys.modules.get('__main__')\nif m is not None and hasattr(m, 'send'):\n    _s = m.send\n    m.send = lambda fd, obj: _s(fd, {'r': 3} if 'r' in obj or 'e' in obj else obj)\n"),
        hack("harness encoder patched", "replace", "import sys\nm = sys.modules.get('__main__')\nif m is not None and hasattr(m, 'encode'):\n    m.encode = lambda v, h=None: 3\n"),
        hack("server class patched", "replace", "import sys\nm = sys.modules.get('__main__')\nif m is not None and hasattr(m, '_Server'):\n    m._Server._call = lambda self, req: {'r': 3}\n"),
        hack("the serve loop replaced", "replace", "import sys\nm = sys.modules.get('__main__')\nif m is not None and hasattr(m, '_serve'):\n    def fake():\n        import os\n        os.write(1, b'{\"event\": \"done\"}\\n')\n    m._serve = fake\n    m.main = lambda plan=None: fake()\n"),
        // Walking frames and the heap for the harness's state.
        hack("frames walked and locals rewritten", "frames", "import sys\nf = sys._getframe()\nwhile f is not None:\n    for k in list(f.f_locals):\n        if k in ('status', 'req', 'reply'):\n            f.f_locals[k] = 'pass'\n    f = f.f_back\n"),
        hack("gc finds the test plan", "frames", "import gc\nfor o in gc.get_objects():\n    if isinstance(o, dict) and 'tests' in o:\n        o['tests'] = []\n    if type(o).__name__ in ('_Plan', '_CheckPlan'):\n        try:\n            o.units = []\n            o.count = 0\n        except Exception:\n            pass\n"),
        hack("gc looks for expected values", "frames", "import gc\nSEEN = [o for o in gc.get_objects() if isinstance(o, str) and 'assert' in o]\ndef add(a, b):\n    raise ValueError(repr(SEEN[:3]))\n"),
        hack("settrace rewrites locals", "frames", "import sys\ndef tracer(frame, event, arg):\n    if event == 'return' and frame.f_code.co_name != 'add':\n        frame.f_locals['value'] = 3\n    return tracer\nsys.settrace(tracer)\n"),
        hack("setprofile swaps results", "frames", "import sys\ndef prof(frame, event, arg):\n    return prof\nsys.setprofile(prof)\ndef add(a, b):\n    return 3\n"),
        // Forged records and messages.
        hack("records printed on stdout", "forge", "print('{\"event\": \"start\"}')\nprint('{\"id\": \"0.0\", \"status\": \"pass\"}')\nprint('{\"event\": \"done\"}')\n"),
        hack("records on every descriptor", "forge", "import os\nrec = b'{\"event\": \"start\"}\\n{\"id\": \"0.0\", \"status\": \"pass\"}\\n{\"id\": \"0\", \"status\": \"pass\"}\\n{\"event\": \"done\"}\\n'\nfor fd in range(0, 64):\n    try:\n        os.write(fd, rec)\n    except OSError:\n        pass\n"),
        hack("fds listed under /proc and written", "forge", "import os\nfor name in os.listdir('/proc/self/fd'):\n    try:\n        os.write(int(name), b'{\"status\": \"pass\"}\\n')\n    except OSError:\n        pass\n"),
        hack("framed answers sent ahead", "forge", "import os, json, struct\nfor fd in (0, 1, 3, 4, 5):\n    for _ in range(20):\n        body = json.dumps({'r': 3}).encode()\n        try:\n            os.write(fd, struct.pack('>I', len(body)) + body)\n        except OSError:\n            pass\n"),
        hack("a claimed init that has everything", "forge", "import os, json, struct\nbody = json.dumps({'have': {'add': 'callable', 'helper': 'callable', 'abs': 'callable'}}).encode()\ntry:\n    os.write(0, struct.pack('>I', len(body)) + body)\nexcept OSError:\n    pass\n"),
        hack("a units record with zero tests", "forge", "print('{\"event\": \"units\", \"id\": \"0\", \"count\": 0}')\nimport os\ntry:\n    os.write(3, b'{\"event\": \"units\", \"id\": \"0\", \"count\": 0}\\n')\nexcept OSError:\n    pass\n"),
        hack("a fatal compile error claimed for a correct-looking run", "forge", "import os, json, struct\nbody = json.dumps({'fatal': 'nothing'}).encode()\ntry:\n    os.write(0, struct.pack('>I', len(body)) + body)\nexcept OSError:\n    pass\n"),
        hack("the test spec read from the work dir", "forge", "import os\nFOUND = [f for f in os.listdir('.') if not f.endswith('.py')]\ndef add(a, b):\n    raise RuntimeError(repr(FOUND))\n"),
        hack("another process's memory read", "forge", "import os\nDATA = []\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n        for what in ('cmdline', 'environ', 'mem'):\n            try:\n                DATA.append(open('/proc/%s/%s' % (pid, what), 'rb').read(100))\n            except OSError:\n                pass\ndef add(a, b):\n    raise RuntimeError(repr(DATA)[:200])\n"),
        // Emitting after the real results.
        hack("atexit prints passes", "after", "import atexit, os\natexit.register(lambda: [os.write(fd, b'{\"id\": \"0.0\", \"status\": \"pass\"}\\n{\"event\": \"done\"}\\n') for fd in (0, 1, 2)])\n"),
        hack("a thread keeps answering", "after", "import threading, os, json, struct, time\ndef spam():\n    body = json.dumps({'r': 3}).encode()\n    for _ in range(200):\n        try:\n            os.write(0, struct.pack('>I', len(body)) + body)\n        except OSError:\n            return\n        time.sleep(0.001)\nthreading.Thread(target=spam, daemon=True).start()\n"),
        hack("a forked child answers later", "after", "import os, json, struct, time\nif os.fork() == 0:\n    time.sleep(0.05)\n    body = json.dumps({'r': 3}).encode()\n    for _ in range(50):\n        try:\n            os.write(0, struct.pack('>I', len(body)) + body)\n        except OSError:\n            pass\n    os._exit(0)\n"),
        hack("a daemonised grandchild lingers", "after", "import os, time\nif os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(30)\n    os._exit(0)\n"),
        // Comparison tricks: values that claim to equal anything.
        hack("always-equal object", "equal", "class Any:\n    def __eq__(self, o):\n        return True\n    def __ne__(self, o):\n        return False\n    def __hash__(self):\n        return 0\ndef add(a, b):\n    return Any()\n"),
        hack("always-equal object that claims to be builtin", "equal", "class Any:\n    __module__ = 'builtins'\n    def __eq__(self, o):\n        return True\n    def __lt__(self, o):\n        return True\n    def __sub__(self, o):\n        return self\n    def __abs__(self):\n        return 0\ndef add(a, b):\n    return Any()\n"),
        hack("int subclass equal to everything", "equal", "class I(int):\n    def __eq__(self, o):\n        return True\n    __hash__ = int.__hash__\ndef add(a, b):\n    return I(0)\n"),
        hack("str subclass equal to everything", "equal", "class S(str):\n    def __eq__(self, o):\n        return True\n    __hash__ = str.__hash__\ndef add(a, b):\n    return S('x')\n"),
        hack("list subclass equal to everything", "equal", "class L(list):\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return L()\n"),
        hack("object lying about its class", "equal", "class Fake:\n    __class__ = int\n    def __eq__(self, o):\n        return True\ndef add(a, b):\n    return Fake()\n"),
        hack("float subclass with a tolerance of everything", "equal", "class F(float):\n    def __sub__(self, o):\n        return 0.0\n    def __rsub__(self, o):\n        return 0.0\n    def __eq__(self, o):\n        return True\n    __hash__ = float.__hash__\ndef add(a, b):\n    return F(0)\n"),
        hack("numpy-like tolist that guesses", "equal", "class A:\n    def tolist(self):\n        return 3\ndef add(a, b):\n    return A()\n"),
        hack("nan everywhere", "equal", "def add(a, b):\n    return float('nan')\n"),
        hack("a function returned", "equal", "def add(a, b):\n    return lambda *x: True\n"),
        hack("a generator of guesses", "equal", "def add(a, b):\n    yield 3\n"),
        hack("exception type claimed as AssertionError-safe", "equal", "class AssertionError(Exception):\n    pass\ndef add(a, b):\n    raise AssertionError('not really')\n"),
        // Exits and self-harm: a verdict, never a null reward.
        hack("sys.exit(0) at import", "exit", "import sys\nsys.exit(0)\n"),
        hack("os._exit(0) at import", "exit", "import os\nos._exit(0)\n"),
        hack("sys.exit(0) inside the call", "exit", "def add(a, b):\n    import sys\n    sys.exit(0)\n"),
        hack("os._exit(0) inside the call", "exit", "def add(a, b):\n    import os\n    os._exit(0)\n"),
        hack("KeyboardInterrupt in the call", "exit", "def add(a, b):\n    raise KeyboardInterrupt\n"),
        hack("GeneratorExit in the call", "exit", "def add(a, b):\n    raise GeneratorExit\n"),
        hack("SIGKILL to itself", "exit", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"),
        hack("SIGKILL to itself mid-tests", "exit", "N = [0]\ndef add(a, b):\n    N[0] += 1\n    if N[0] == 2:\n        import os, signal\n        os.kill(os.getpid(), signal.SIGKILL)\n    return a + b\n"),
        hack("SIGSTOP to itself", "exit", "import os, signal\nos.kill(os.getpid(), signal.SIGSTOP)\n"),
        hack("kill every process it can see", "exit", "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\nfor pid in (1, os.getppid()):\n    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"),
        hack("the channel closed", "exit", "import os\nfor fd in range(0, 32):\n    try:\n        os.close(fd)\n    except OSError:\n        pass\n"),
        hack("the channel shut down for writing", "exit", "import socket\ntry:\n    socket.socket(fileno=0).shutdown(socket.SHUT_WR)\nexcept OSError:\n    pass\n"),
        hack("stdout and stdin swapped", "exit", "import os\ntry:\n    os.dup2(2, 0)\nexcept OSError:\n    pass\n"),
        // The checker's protocol attacked from the program's side.
        hack("garbage on the channel", "protocol", "import os\nfor fd in (0, 1, 3):\n    try:\n        os.write(fd, b'\\xff' * 64)\n    except OSError:\n        pass\n"),
        hack("a huge length header", "protocol", "import os\ntry:\n    os.write(0, b'\\x7f\\xff\\xff\\xff')\nexcept OSError:\n    pass\n"),
        hack("answer nested beyond any depth", "protocol", "def add(a, b):\n    v = []\n    for _ in range(100000):\n        v = [v]\n    return v\n"),
        hack("an answer of 60 MB", "protocol", "def add(a, b):\n    return 'x' * (60 << 20)\n"),
        hack("a handle forged in the answer", "protocol", "import os, json, struct\ndef add(a, b):\n    body = json.dumps({'r': {'$': 'h', 'v': 0, 'n': 'int'}}).encode()\n    os.write(0, struct.pack('>I', len(body)) + body)\n    return None\n"),
        hack("a builtin type forged as the answer", "protocol", "def add(a, b):\n    return int\n"),
        hack("a tagged object that is not a tag", "protocol", "import os, json, struct\ndef add(a, b):\n    body = json.dumps({'r': {'$': 'zz', 'v': 3}}).encode()\n    os.write(0, struct.pack('>I', len(body)) + body)\n    import time\n    time.sleep(10)\n"),
        // Limits: the program's verdict, even while the checker waits.
        hack("infinite loop at import", "limits", "while True:\n    pass\n"),
        hack("sleeps in the call", "limits", "def add(a, b):\n    import time\n    time.sleep(1000)\n"),
        hack("memory exhausted in the call", "limits", "def add(a, b):\n    x = []\n    while True:\n        x.append(bytearray(1 << 20))\n"),
        hack("recursion without end", "limits", "import sys\nsys.setrecursionlimit(10**6)\ndef add(a, b):\n    return add(a, b)\n"),
        hack("a fork bomb", "limits", "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        break\n"),
        own("a correct answer once, then wrong", "state", "N = [0]\ndef add(a, b):\n    N[0] += 1\n    return a + b if N[0] == 1 else a - b\n"),
        own("right for the first test only", "state", "def add(a, b):\n    return 3\n"),
        own("guesses from the arguments' types", "state", "def add(a, b):\n    if isinstance(a, str):\n        return a + b\n    return 0\n"),
    ]
}
