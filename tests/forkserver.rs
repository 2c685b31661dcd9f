//! The fork server: executions forked from a warm zygote are isolated as strongly as
//! fresh runs, and nothing one execution does is seen by a later one in the same server.
//!
//! Each test has its own server (tests run one at a time, see tests/support), runs
//! programs through it, and ends with `finish`, which drops the server and asserts that
//! nothing is left behind (processes, mounts, cgroups, scratch dirs). Leakage tests use a
//! single slot, so every execution is forked from the same zygote as the one before.

use crucible_core::{Limits, RunStatus};
use crucible_suite::{
    assert_mixed_outcome, assert_unprivileged, fork_request, json_line, tight_limits, ForkHarness,
    Sentinel, MIXED_PROGRAMS,
};
use serde_json::Value;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

const EPERM: i64 = libc::EPERM as i64;

/// Runs `pollute` then `check` in the same single-slot server; returns `check`'s JSON.
fn after(pollute: &str, check: &str) -> Value {
    let h = ForkHarness::new(1);
    let r = h.run(pollute, tight_limits());
    assert_eq!(r.status, RunStatus::Ok, "pollute: {r:#?}");
    let r = h.run(check, tight_limits());
    assert_eq!(r.status, RunStatus::Ok, "check: {r:#?}");
    let v = json_line(&r);
    h.finish();
    v
}

#[test]
fn offered_files_reach_prepare_in_the_zygote_and_are_not_written() {
    let h = ForkHarness::new(1);
    let code = "import os\nprint(repr(PREPARED), sorted(os.listdir('/work')))\n";
    let run = |name: &str| {
        let mut req = fork_request(code, tight_limits());
        req.files.push((name.into(), b"host data".to_vec()));
        req.prepare = vec![name.into()];
        let r = h.server().run(&req);
        assert_eq!(r.status, RunStatus::Ok, "{name}: {r:#?}");
        r.stdout
    };
    // Taken by the entry's prepare(): the child gets what it returned, not the file.
    assert_eq!(run("prepared.txt"), "b'host data' ['main.py']\n");
    // Declined (None) or failed (an exception in the hook): written as usual, and the
    // zygote goes on serving.
    assert_eq!(run("other.txt"), "None ['main.py', 'other.txt']\n");
    assert_eq!(run("raise.txt"), "None ['main.py', 'raise.txt']\n");
    // Offered names that are not among the files change nothing.
    let mut req = fork_request(code, tight_limits());
    req.prepare = vec!["prepared.txt".into()];
    let r = h.server().run(&req);
    assert_eq!(r.stdout, "None ['main.py']\n", "{r:#?}");
    h.finish();
}

#[test]
fn programs_run_as_python_runs_them() {
    let h = ForkHarness::new(1);
    let mut req = fork_request(
        "import sys, json, os\n\
         data = sys.stdin.buffer.read()\n\
         helper = open('/work/lib/helper.txt').read()\n\
         open('/work/out.txt', 'w').write('scratch')\n\
         print(json.dumps({'n': len(data), 'helper': helper, 'cwd': os.getcwd(),\n\
             'argv': sys.argv, 'name': __name__, 'files': sorted(os.listdir('/work'))}))\n",
        tight_limits(),
    );
    req.files.push(("lib/helper.txt".into(), b"hi".to_vec()));
    // Bigger than a pipe buffer: stdin must not deadlock.
    req.stdin = vec![b'a'; 3 << 20];
    let r = h.server().run(&req);
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    assert_eq!(v["n"], 3 << 20);
    assert_eq!(v["helper"], "hi");
    assert_eq!(v["cwd"], "/work");
    assert_eq!(v["argv"], serde_json::json!(["/work/main.py"]));
    assert_eq!(v["name"], "__main__");
    assert_eq!(v["files"], serde_json::json!(["lib", "main.py", "out.txt"]));
    assert!(r.memory_kb > 0, "memory measured: {r:#?}");

    let r = h.run("import sys; print('x'); sys.exit(3)", tight_limits());
    assert_eq!(
        (r.status, r.exit_code, r.stdout.as_str()),
        (RunStatus::RuntimeError, Some(3), "x\n"),
        "{r:#?}"
    );
    let r = h.run("import os; os.abort()", tight_limits());
    assert_eq!(
        (r.status, r.signal),
        (RunStatus::RuntimeError, Some(libc::SIGABRT)),
        "{r:#?}"
    );
    let r = h.run("print('before')\n1 / 0\n", tight_limits());
    assert_eq!((r.status, r.exit_code), (RunStatus::RuntimeError, Some(1)));
    assert_eq!(r.stdout, "before\n");
    assert!(r.stderr.starts_with("Traceback"), "{r:#?}");
    assert_eq!(
        r.stderr.lines().last(),
        Some("ZeroDivisionError: division by zero")
    );
    let r = h.run("import sys; sys.exit('bye')", tight_limits());
    assert_eq!((r.exit_code, r.stderr.as_str()), (Some(1), "bye\n"));
    let r = h.run("raise KeyboardInterrupt", tight_limits());
    assert_eq!(r.signal, Some(libc::SIGINT), "{r:#?}");
    // Interpreter exit: non-daemon threads are joined, then atexit handlers run, then
    // buffered output is flushed.
    let r = h.run(
        "import atexit, sys, threading, time\n\
         atexit.register(lambda: print('atexit'))\n\
         threading.Thread(target=lambda: (time.sleep(0.2), print('thread'))).start()\n\
         sys.stdout = open(1, 'w', buffering=1 << 20, closefd=False)\n\
         print('buffered')\n",
        tight_limits(),
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    assert_eq!(r.stdout, "buffered\nthread\natexit\n");
    h.finish();
}

#[test]
fn the_stack_is_as_deep_as_in_a_fresh_interpreter() {
    // The entry point runs at the depth `python3 ENTRY` gives it, so a program recursing
    // near the limit meets RecursionError at the same depth as in a fresh run.
    let code = "import sys\n\
                def down(n):\n    try:\n        return down(n + 1)\n    except RecursionError:\n        return n\n\
                print(down(0), sys.getrecursionlimit())\n";
    let fresh = crucible_suite::Harness::new();
    let spec = crucible_sandbox::RunSpec {
        argv: vec![
            crucible_suite::PYTHON.into(),
            "-s".into(),
            "-P".into(),
            "/work/runner.py".into(),
            "/work/main.py".into(),
        ],
        files: vec![
            ("runner.py".into(), FORK_RUNNER_MAIN.as_bytes().to_vec()),
            ("main.py".into(), code.as_bytes().to_vec()),
        ],
        ..crucible_suite::python_spec("", tight_limits())
    };
    let want = fresh.run(&spec);
    assert_eq!(want.status, RunStatus::Ok, "{want:#?}");
    drop(fresh);
    let h = ForkHarness::new(1);
    let got = h.run(code, tight_limits());
    assert_eq!(got.status, RunStatus::Ok, "{got:#?}");
    assert_eq!(got.stdout, want.stdout);
    h.finish();
}

/// The fork-server runner as a script, to run in a fresh sandbox.
const FORK_RUNNER_MAIN: &str = concat!(
    include_str!("support/runner.py"),
    "\nif __name__ == \"__main__\":\n    main()\n"
);

#[test]
fn identity_and_privileges_inside() {
    let h = ForkHarness::new(1);
    let r = h.run(
        "import os, json\n\
         environ = [e.split('=', 1) for e in open('/proc/self/environ').read().split('\\0') if e]\n\
         status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n\
         print(json.dumps({'environ': environ, 'hostname': os.uname().nodename,\n\
             'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n\
             'caps': [status['CapInh'], status['CapPrm'], status['CapEff'], status['CapBnd'], status['CapAmb']],\n\
             'nnp': status['NoNewPrivs'], 'seccomp': status['Seccomp'],\n\
             'root': sorted(os.listdir('/')), 'stdout': os.readlink('/proc/self/fd/1')}))",
        tight_limits(),
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    let env: Vec<(String, String)> = crucible_suite::default_env();
    let environ: Vec<(String, String)> = v["environ"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap().into(), p[1].as_str().unwrap().into()))
        .collect();
    assert_eq!(environ, env, "the environment is exactly the spec's");
    assert_unprivileged(&v);
    assert_eq!(v["uid"], 1000);
    assert_eq!(v["euid"], 1000);
    assert_eq!(v["gid"], 1000);
    assert_eq!(
        v["root"],
        serde_json::json!(["bin", "dev", "etc", "lib", "lib64", "proc", "usr", "work"])
    );
    // A uid change makes a process non-dumpable unless reset, which would hide its own
    // /proc/self/fd (and so /dev/stdout) from it.
    assert!(v["stdout"].as_str().unwrap().starts_with("pipe:"), "{v}");
    h.finish();
}

#[test]
fn module_globals_builtins_and_sys_modules_do_not_leak() {
    let v = after(
        "import builtins, sys, json, collections, random\n\
         json.dumps = None\n\
         collections.LEAK = 1\n\
         builtins.len = lambda x: -1\n\
         builtins.LEAKED = True\n\
         sys.modules['leaked_module'] = type(sys)('leaked_module')\n\
         sys.path.insert(0, '/evil')\n\
         sys.setrecursionlimit(50)\n\
         random.random = lambda: 4\n\
         sys.stdout.write('polluted\\n')\n",
        "import builtins, sys, json, collections, random\n\
         print(json.dumps({'dumps_ok': callable(json.dumps), 'collections': hasattr(collections, 'LEAK'),\n\
             'len': len([1, 2]), 'builtin': hasattr(builtins, 'LEAKED'),\n\
             'module': 'leaked_module' in sys.modules, 'path': '/evil' in sys.path,\n\
             'recursion': sys.getrecursionlimit(), 'random': random.random() != 4}))",
    );
    assert_eq!(
        v,
        serde_json::json!({"dumps_ok": true, "collections": false, "len": 2, "builtin": false,
            "module": false, "path": false, "recursion": 1000, "random": true})
    );
}

#[test]
fn files_in_work_and_tmp_do_not_leak() {
    let v = after(
        "import os\n\
         open('/work/leak.txt', 'w').write('secret')\n\
         os.mkdir('/work/dir')\n\
         res = []\n\
         for p in ['/tmp/leak.txt', '/leak.txt', '/usr/leak.txt']:\n    \
             try:\n        open(p, 'w').write('x')\n        res.append(p)\n    \
             except OSError:\n        pass\n\
         assert res == [], res\n",
        "import os, json\n\
         print(json.dumps({'work': sorted(os.listdir('/work')),\n\
             'tmp': os.path.exists('/tmp/leak.txt'), 'root': os.path.exists('/leak.txt')}))",
    );
    assert_eq!(
        v,
        serde_json::json!({"work": ["main.py"], "tmp": false, "root": false})
    );
}

#[test]
fn environment_does_not_leak() {
    let v = after(
        "import os\n\
         os.environ['LEAK'] = '1'\n\
         os.putenv('LEAK2', '1')\n\
         os.environ['PATH'] = '/evil'\n\
         del os.environ['LANG']\n",
        "import os, json\n\
         environ = sorted(e.split('=', 1)[0] for e in open('/proc/self/environ').read().split('\\0') if e)\n\
         print(json.dumps({'leak': 'LEAK' in os.environ or 'LEAK2' in os.environ,\n\
             'path': os.environ['PATH'], 'lang': os.environ.get('LANG'), 'environ': environ}))",
    );
    assert_eq!(
        v,
        serde_json::json!({"leak": false, "path": "/usr/bin:/bin", "lang": "C.UTF-8",
            "environ": ["LANG", "PATH", "TMPDIR"]})
    );
}

#[test]
fn open_descriptors_do_not_leak() {
    let v = after(
        "import os, socket\n\
         keep = [open('/work/main.py'), socket.socketpair()]\n\
         fd = os.open('/dev/null', os.O_RDONLY)\n\
         os.dup2(fd, 40)\n\
         os.set_inheritable(40, True)\n\
         r, w = os.pipe()\n\
         if os.fork() == 0:\n    import time; time.sleep(30)\n",
        "import os, json\n\
         print(json.dumps({'fds': sorted(int(f) for f in os.listdir('/proc/self/fd'))}))",
    );
    // 0-2, and the descriptor listdir itself holds open.
    assert_eq!(v, serde_json::json!({"fds": [0, 1, 2, 3]}));
}

#[test]
fn signal_handlers_and_mask_do_not_leak() {
    let v = after(
        "import signal\n\
         signal.signal(signal.SIGUSR1, lambda *a: None)\n\
         signal.signal(signal.SIGTERM, signal.SIG_IGN)\n\
         signal.signal(signal.SIGINT, signal.SIG_IGN)\n\
         signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2, signal.SIGALRM])\n\
         signal.alarm(100)\n",
        "import signal, json\n\
         status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n\
         print(json.dumps({'usr1': signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL,\n\
             'term': signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,\n\
             'int': signal.getsignal(signal.SIGINT) is signal.default_int_handler,\n\
             'mask': sorted(signal.pthread_sigmask(signal.SIG_BLOCK, [])), 'alarm': signal.alarm(0),\n\
             'SigBlk': status['SigBlk'].strip()}))",
    );
    assert_eq!(
        v,
        serde_json::json!({"usr1": true, "term": true, "int": true, "mask": [], "alarm": 0,
            "SigBlk": "0000000000000000"})
    );
}

#[test]
fn random_state_does_not_leak() {
    let h = ForkHarness::new(1);
    // Like a fresh interpreter, each execution's random module starts from a fresh
    // seed: two runs in a row draw different numbers...
    let draw = "import random; print(random.random())";
    let a = h.run(draw, tight_limits());
    let b = h.run(draw, tight_limits());
    assert_eq!((a.status, b.status), (RunStatus::Ok, RunStatus::Ok));
    assert_ne!(a.stdout, b.stdout, "fresh seed per execution");
    // ...and seeding or drawing in one execution changes nothing in the next.
    let seeded = h.run(
        "import random; random.seed(1234); print(random.random()); random.getrandbits(10000)",
        tight_limits(),
    );
    let next = h.run(draw, tight_limits());
    assert_ne!(seeded.stdout, next.stdout);
    // Seeded the same way, two executions agree exactly.
    let same = "import random; random.seed(7); print([random.random() for _ in range(3)])";
    let x = h.run(same, tight_limits());
    let y = h.run(same, tight_limits());
    assert_eq!(x.stdout, y.stdout);
    // The hash seed is the environment's, as for a fresh interpreter.
    let hashes = "print(hash('crucible'))";
    let c = h.run(hashes, tight_limits());
    let d = h.run(hashes, tight_limits());
    assert_eq!(c.stdout, d.stdout);
    h.finish();
}

#[test]
fn ipc_objects_sockets_and_processes_do_not_leak() {
    let v = after(
        "import ctypes, os, socket, time\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         assert libc.shmget(0x1234, 4096, 0o1666) >= 0, ctypes.get_errno()\n\
         assert libc.msgget(0x1234, 0o1666) >= 0\n\
         s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n\
         s.bind('\\0crucible-leak')\n\
         s.listen()\n\
         if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n",
        "import ctypes, os, socket, json\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         res = {'shm': libc.shmget(0x1234, 0, 0), 'msg': libc.msgget(0x1234, 0)}\n\
         try:\n    socket.socket(socket.AF_UNIX).connect('\\0crucible-leak'); res['socket'] = 'connected'\n\
         except OSError:\n    res['socket'] = 'refused'\n\
         me = os.getpid()\n\
         res['others'] = [p for p in os.listdir('/proc') if p.isdigit() and int(p) != me\n\
             and os.stat('/proc/' + p).st_uid == os.getuid()]\n\
         print(json.dumps(res))",
    );
    assert_eq!(
        v,
        serde_json::json!({"shm": -1, "msg": -1, "socket": "refused", "others": []})
    );
}

#[test]
fn killing_the_parent_or_other_pids_harms_no_other_run() {
    let mut sentinel = Sentinel::sleep(60);
    let host_pid = sentinel.child.id();
    let h = ForkHarness::new(2);
    let ppid = "import os; print(os.getppid())";
    let before = h.run(ppid, tight_limits());
    let code = format!(
        "import os, signal, json, time\n\
         res = {{}}\n\
         child = os.fork()\n\
         if child == 0:\n    time.sleep(100)\n    os._exit(0)\n\
         for name, pid in [('parent', os.getppid()), ('init', 1), ('host', {host_pid})]:\n    \
             try:\n        os.kill(pid, signal.SIGKILL)\n        res[name] = 'sent'\n    \
             except OSError as e:\n        res[name] = e.errno\n\
         os.kill(-1, signal.SIGKILL)\n\
         _, st = os.waitpid(child, 0)\n\
         res['child_signal'] = os.WTERMSIG(st) if os.WIFSIGNALED(st) else None\n\
         killed = 0\n\
         for pid in range(1, 400):\n    \
             try:\n        os.kill(pid, signal.SIGKILL if pid != os.getpid() else 0); killed += pid != os.getpid()\n    \
             except OSError:\n        pass\n\
         res['killed_others'] = killed\n\
         print(json.dumps(res))"
    );
    // A long run in the other slot, to be shot at.
    let (victim, attacker) = std::thread::scope(|s| {
        let victim = s.spawn(|| {
            h.run(
                "import time; time.sleep(1.5); print('alive')",
                tight_limits(),
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        let attacker = h.run(&code, tight_limits());
        (victim.join().unwrap(), attacker)
    });
    assert_eq!(attacker.status, RunStatus::Ok, "{attacker:#?}");
    let v = json_line(&attacker);
    assert_eq!(
        v["parent"].as_i64(),
        Some(EPERM),
        "the zygote is out of reach: {v}"
    );
    assert_eq!(v["init"].as_i64(), Some(EPERM), "{v}");
    assert_eq!(v["host"].as_i64(), Some(libc::ESRCH as i64), "{v}");
    assert_eq!(
        v["child_signal"],
        libc::SIGKILL,
        "kill(-1) reaches its own processes"
    );
    assert_eq!(
        v["killed_others"], 0,
        "no other process can be signalled: {v}"
    );
    assert_eq!(victim.status, RunStatus::Ok, "{victim:#?}");
    assert_eq!(victim.stdout, "alive\n");
    assert!(sentinel.alive(), "the host sentinel was killed");
    // The same zygotes serve on.
    for _ in 0..4 {
        let after = h.run(ppid, tight_limits());
        assert_eq!(after.status, RunStatus::Ok);
        assert!(
            after.stdout == before.stdout || after.stdout.trim() != "0",
            "zygote replaced? {after:#?}"
        );
    }
    h.finish();
    drop(sentinel);
}

/// Host pids of the zygotes of this test process (descendants whose command line names
/// the zygote script).
fn zygote_pids() -> Vec<u32> {
    crucible_suite::our_processes()
        .into_iter()
        .filter(|(_, cmd)| cmd.contains("zygote.py --entry"))
        .map(|(pid, _)| pid)
        .collect()
}

#[test]
fn a_zygote_killed_mid_run_is_a_sandbox_error_and_the_next_run_succeeds() {
    let h = ForkHarness::new(1);
    let warm = h.run("pass", tight_limits());
    assert_eq!(warm.status, RunStatus::Ok);
    let zygotes = zygote_pids();
    assert_eq!(zygotes.len(), 1, "{zygotes:?}");
    let r = std::thread::scope(|s| {
        let run = s.spawn(|| h.run("import time; time.sleep(3); print('done')", tight_limits()));
        std::thread::sleep(Duration::from_millis(500));
        // SAFETY: signalling a process this test started.
        unsafe { libc::kill(zygotes[0] as i32, libc::SIGKILL) };
        run.join().unwrap()
    });
    assert_eq!(r.status, RunStatus::SandboxError, "{r:#?}");
    assert!(r.message.is_some());
    assert!(
        r.wall_ms < 2_500,
        "detected at once, not at the deadline: {r:#?}"
    );
    let next = h.run("print('fine')", tight_limits());
    assert_eq!(next.status, RunStatus::Ok, "{next:#?}");
    assert_eq!(next.stdout, "fine\n");
    let now = zygote_pids();
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], zygotes[0], "a new zygote serves");

    // Killed while idle: replaced before the next run, which does not notice.
    // SAFETY: as above.
    unsafe { libc::kill(now[0] as i32, libc::SIGKILL) };
    std::thread::sleep(Duration::from_millis(100));
    let r = h.run("print('still fine')", tight_limits());
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    h.finish();
}

#[test]
fn memory_bomb_is_memory_limit_exceeded() {
    let h = ForkHarness::new(1);
    let limits = Limits {
        memory_bytes: 256 << 20,
        ..tight_limits()
    };
    let r = h.run(
        "chunks = []\n\
         for i in range(128):\n    chunks.append(b'x' * (16 << 20))\n\
         print('survived')",
        limits,
    );
    assert_eq!(r.status, RunStatus::MemoryLimitExceeded, "{r:#?}");
    assert_eq!(r.signal, Some(libc::SIGKILL));
    assert!(r.memory_kb >= 200 << 10, "peak near the limit: {r:#?}");
    assert!(
        r.memory_kb <= (256 << 10) + 1024,
        "peak within the limit: {r:#?}"
    );
    assert!(!r.stdout.contains("survived"));
    // Two processes of 160 MiB: either fits, both do not.
    let r = h.run(
        "import os, time\n\
         pid = os.fork()\n\
         data = b'x' * (160 << 20)\n\
         time.sleep(1)\n\
         if pid == 0:\n    os._exit(0)\n\
         _, status = os.waitpid(pid, 0)\n\
         print('both fit' if status == 0 else 'child died')",
        limits,
    );
    assert_eq!(r.status, RunStatus::MemoryLimitExceeded, "{r:#?}");
    // The next execution has the whole limit again.
    let r = h.run("data = b'x' * (200 << 20); print(len(data))", limits);
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    // A lower limit for one execution, then back.
    let small = Limits {
        memory_bytes: 64 << 20,
        ..tight_limits()
    };
    let r = h.run("data = b'x' * (100 << 20)", small);
    assert_eq!(r.status, RunStatus::MemoryLimitExceeded, "{r:#?}");
    let r = h.run("data = b'x' * (100 << 20)", limits);
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    h.finish();
}

#[test]
fn infinite_loops_and_sleepers_are_time_limit_exceeded() {
    let h = ForkHarness::new(1);
    let cpu = Limits {
        cpu_time_ms: 1_000,
        wall_time_ms: 20_000,
        ..tight_limits()
    };
    let r = h.run("while True: pass", cpu);
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    assert!(
        (950..=2_200).contains(&r.cpu_ms),
        "cpu_ms near 1000: {r:#?}"
    );
    assert!(r.message.unwrap_or_default().contains("cpu"));
    // Four spinning processes share the one limit.
    let r = h.run("import os\nos.fork(); os.fork()\nwhile True: pass", cpu);
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    assert!((950..=1_600).contains(&r.cpu_ms), "tree capped: {r:#?}");
    let wall = Limits {
        cpu_time_ms: 2_000,
        wall_time_ms: 1_500,
        ..tight_limits()
    };
    let r = h.run("import time; time.sleep(10_000)", wall);
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    assert!(r.message.as_deref().unwrap_or_default().contains("wall"));
    assert!((1_500..4_500).contains(&r.wall_ms), "{r:#?}");
    assert!(r.cpu_ms < 500);
    assert_eq!(r.signal, Some(libc::SIGKILL));
    let r = h.run("print('next')", tight_limits());
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    h.finish();
}

#[test]
fn fork_bomb_is_contained() {
    let h = ForkHarness::new(1);
    let limits = Limits {
        cpu_time_ms: 2_000,
        wall_time_ms: 4_000,
        processes: 16,
        ..tight_limits()
    };
    let r = h.run(
        "import os\n\
         n = 0\n\
         while True:\n    try:\n        os.fork()\n    except OSError:\n        n += 1\n",
        limits,
    );
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    assert!(r.wall_ms <= 6_000, "ended within its limits: {r:#?}");
    // At most `processes` at once, and every one gone afterwards.
    let r = h.run(
        "import os, time, json\n\
         ok = 0\n\
         for i in range(40):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    \
         if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    ok += 1\n\
         print(json.dumps({'forks': ok}))",
        Limits {
            processes: 8,
            ..tight_limits()
        },
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let forks = json_line(&r)["forks"].as_i64().unwrap();
    assert!(
        (1..8).contains(&forks),
        "at most 8 processes, got {forks} forks"
    );
    let r = h.run("print('next')", tight_limits());
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    h.finish();
}

#[test]
fn a_gigabyte_of_output_is_stopped_early() {
    let h = ForkHarness::new(1);
    let limits = Limits {
        output_bytes: 1 << 20,
        cpu_time_ms: 30_000,
        wall_time_ms: 60_000,
        ..tight_limits()
    };
    let r = h.run(
        "import sys\n\
         chunk = b'x' * (1 << 20)\n\
         for _ in range(1024):\n    sys.stdout.buffer.write(chunk)\n\
         sys.stdout.flush()\n\
         sys.stderr.write('finished')",
        limits,
    );
    assert_eq!(r.status, RunStatus::OutputLimitExceeded, "{:?}", r.message);
    assert!(r.stdout_truncated);
    assert_eq!(r.stdout.len(), 1 << 20);
    assert!(!r.stderr.contains("finished"));
    assert_eq!(r.signal, Some(libc::SIGKILL));
    assert!(r.wall_ms < 1_000, "killed promptly: {}", r.wall_ms);
    let r = h.run(
        "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)",
        limits,
    );
    assert_eq!(r.status, RunStatus::OutputLimitExceeded, "{r:#?}");
    assert!(r.stderr_truncated && !r.stdout_truncated);
    let r = h.run(
        "import sys; sys.stdout.write('y' * 1000)",
        Limits {
            output_bytes: 1000,
            ..tight_limits()
        },
    );
    assert_eq!(
        (r.status, r.stdout.len(), r.stdout_truncated),
        (RunStatus::Ok, 1000, false)
    );
    // One byte more, from a program that ends at once, long before the host's next
    // look at a quiet execution's pipes: still the output limit, every time.
    for _ in 0..5 {
        let r = h.run(
            "import sys; sys.stdout.write('y' * 1001)",
            Limits {
                output_bytes: 1000,
                ..tight_limits()
            },
        );
        assert_eq!(r.status, RunStatus::OutputLimitExceeded, "{r:#?}");
        assert!(r.stdout_truncated);
    }
    h.finish();
}

#[test]
fn megabytes_of_output_under_the_cap_arrive_whole() {
    // 8 MiB in 64 KiB writes: more than the pipes hold, so the host goes from reading
    // them every few milliseconds to reading them as output comes; nothing is lost.
    let h = ForkHarness::new(1);
    let limits = Limits {
        output_bytes: 16 << 20,
        cpu_time_ms: 30_000,
        wall_time_ms: 60_000,
        ..tight_limits()
    };
    let r = h.run(
        "import sys\nfor _ in range(128):\n    sys.stdout.write('z' * 65536)",
        limits,
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    assert_eq!(r.stdout.len(), 8 << 20);
    h.finish();
}

#[test]
fn file_size_disk_and_descriptor_limits_hold() {
    let h = ForkHarness::new(1);
    let limits = Limits {
        file_size_bytes: 1 << 20,
        work_dir_bytes: 4 << 20,
        open_files: 32,
        ..tight_limits()
    };
    let r = h.run(
        "import json, os\n\
         res = {}\n\
         try:\n    open('/work/big', 'wb').write(b'x' * (2 << 20)); res['big'] = 'written'\n\
         except OSError as e:\n    res['big'] = e.errno\n\
         os.remove('/work/big')\n\
         try:\n    \n    for i in range(8):\n        open(f'/work/f{i}', 'wb').write(b'y' * ((1 << 20) - 1))\n    res['fill'] = 'written'\n\
         except OSError as e:\n    res['fill'] = e.errno\n\
         files = []\n\
         try:\n    \n    for i in range(100):\n        files.append(open('/dev/null'))\n    res['fds'] = 'opened'\n\
         except OSError as e:\n    res['fds'] = e.errno\n\
         print(json.dumps(res))",
        limits,
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    assert_eq!(v["big"].as_i64(), Some(libc::EFBIG as i64), "{v}");
    assert_eq!(v["fill"].as_i64(), Some(libc::ENOSPC as i64), "{v}");
    assert_eq!(v["fds"].as_i64(), Some(libc::EMFILE as i64), "{v}");
    h.finish();
}

#[test]
fn writes_outside_work_fail_and_the_host_is_unchanged() {
    let h = ForkHarness::new(1);
    let targets = [
        "/pwned",
        "/usr/pwned",
        "/usr/lib/pwned",
        "/etc/pwned",
        "/etc/ld.so.cache",
        "/tmp/pwned",
        "/bin/pwned",
        "/dev/pwned",
        "/proc/sys/kernel/hostname",
    ];
    let host_cache = std::fs::read("/etc/ld.so.cache").unwrap();
    let code = format!(
        "import os, json\n\
         res = {{}}\n\
         for p in {targets:?}:\n    \
             try:\n        \
                 with open(p, 'w') as f: f.write('pwned')\n        \
                 res[p] = 'written'\n    \
             except OSError as e:\n        \
                 res[p] = e.errno\n\
         try:\n    os.symlink('/etc', '/work/etc-link'); open('/work/etc-link/pwned', 'w')\n    res['via-symlink'] = 'written'\n\
         except OSError as e:\n    res['via-symlink'] = e.errno\n\
         print(json.dumps(res))"
    );
    let r = h.run(&code, tight_limits());
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    for t in targets.iter().chain(&["via-symlink"]) {
        assert!(v[*t].is_i64(), "{t} must fail: {v}");
    }
    for t in &targets[..8] {
        if *t != "/etc/ld.so.cache" {
            assert!(!Path::new(t).exists(), "{t} appeared on the host");
        }
    }
    assert_eq!(std::fs::read("/etc/ld.so.cache").unwrap(), host_cache);
    h.finish();
}

#[test]
fn network_secrets_and_privileged_operations_are_out_of_reach() {
    let h = ForkHarness::new(1);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket, json, os, ctypes\n\
         res = {{}}\n\
         for name, fam in [('inet', socket.AF_INET), ('inet6', socket.AF_INET6)]:\n    \
             try:\n        socket.socket(fam, socket.SOCK_STREAM)\n        res[name] = 'created'\n    \
             except OSError as e:\n        res[name] = e.errno\n\
         try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    res['connect'] = 'connected'\n\
         except OSError as e:\n    res['connect'] = e.errno\n\
         for p in ['/etc/shadow', '/root', '/root/.bashrc', '/proc/1/root/etc/shadow', '/proc/1/environ',\n\
                   '/proc/1/mem', '/proc/1/cwd/zygote.py', '/work/zygote.py', '/work/runner.py']:\n    \
             try:\n        res[p] = os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(64).decode('latin1')\n    \
             except OSError as e:\n        res[p] = e.errno\n\
         libc = ctypes.CDLL(None, use_errno=True)\n\
         def attempt(name, f):\n    \
             ctypes.set_errno(0)\n    \
             r = f()\n    \
             res[name] = ctypes.get_errno() if r == -1 else 'succeeded'\n\
         attempt('ptrace_attach_parent', lambda: libc.ptrace(16, os.getppid(), None, None))\n\
         attempt('mount', lambda: libc.mount(b'none', b'/work', b'tmpfs', 0, None))\n\
         attempt('umount', lambda: libc.umount2(b'/work', 2))\n\
         attempt('unshare_ipc', lambda: libc.unshare(0x08000000))\n\
         attempt('unshare_ns', lambda: libc.unshare(0x00020000))\n\
         attempt('unshare_user', lambda: libc.unshare(0x10000000))\n\
         attempt('setuid0', lambda: libc.setuid(0))\n\
         attempt('chroot', lambda: libc.chroot(b'/work'))\n\
         attempt('setns', lambda: libc.syscall(308, 0, 0))\n\
         print(json.dumps(res))"
    );
    let r = h.run(&code, tight_limits());
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    let eafnosupport = libc::EAFNOSUPPORT as i64;
    assert_eq!(v["inet"].as_i64(), Some(eafnosupport), "{v}");
    assert_eq!(v["inet6"].as_i64(), Some(eafnosupport), "{v}");
    assert!(v["connect"].is_i64(), "{v}");
    for p in [
        "/etc/shadow",
        "/root",
        "/root/.bashrc",
        "/proc/1/root/etc/shadow",
        "/proc/1/environ",
        "/proc/1/mem",
        "/proc/1/cwd/zygote.py",
        "/work/zygote.py",
        "/work/runner.py",
    ] {
        assert!(v[p].is_i64(), "{p} must be out of reach: {v}");
    }
    for k in [
        "ptrace_attach_parent",
        "mount",
        "umount",
        "unshare_ipc",
        "unshare_ns",
        "unshare_user",
        "setuid0",
        "chroot",
        "setns",
    ] {
        assert_eq!(v[k].as_i64(), Some(EPERM), "{k}: {v}");
    }
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    h.finish();
}

#[test]
fn background_children_do_not_outlive_the_run() {
    let h = ForkHarness::new(1);
    let started = Instant::now();
    let r = h.run(
        "import os, time\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n    os._exit(0)\n\
         time.sleep(0.2)\n\
         print('parent done')",
        tight_limits(),
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    assert_eq!(r.stdout, "parent done\n");
    assert!(started.elapsed() < Duration::from_secs(3));
    h.finish();
}

#[test]
fn many_parallel_runs_share_one_server() {
    let h = ForkHarness::new(3);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let h = &h;
                s.spawn(move || {
                    let code = MIXED_PROGRAMS[i % 4].0;
                    let mut limits = tight_limits();
                    limits.wall_time_ms = 1_500;
                    let mut req = fork_request(code, limits);
                    req.stdin = b"in".to_vec();
                    (i, h.server().run(&req))
                })
            })
            .collect();
        for hd in handles {
            let (i, r) = hd.join().unwrap();
            assert_mixed_outcome(i, &r);
        }
    });
    h.finish();
}

#[test]
fn setup_failures_are_sandbox_errors() {
    let h = ForkHarness::new(1);
    let mut req = fork_request("pass", tight_limits());
    req.files.push(("../escape".into(), vec![]));
    assert_eq!(h.server().run(&req).status, RunStatus::SandboxError);
    let mut req = fork_request("pass", tight_limits());
    req.argv.clear();
    assert_eq!(h.server().run(&req).status, RunStatus::SandboxError);
    // A file path the child cannot create: reported as the sandbox's failure.
    let mut req = fork_request("pass", tight_limits());
    req.files.push(("main.py/inside".into(), vec![]));
    let r = h.server().run(&req);
    assert_eq!(r.status, RunStatus::SandboxError, "{r:#?}");
    assert!(r.message.unwrap_or_default().contains("files"));
    // The server is fine afterwards.
    assert_eq!(h.run("pass", tight_limits()).status, RunStatus::Ok);
    h.finish();
}

/// VmRSS and VmHWM of a process, in KiB.
fn rss_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The executor's memory over many executions (scripts/bench-forkserver.sh runs it with
/// CRUCIBLE_RSS_EXECUTIONS=100000): a judge with the Python fork server judges a
/// one-assert submission again and again from two threads, and the RSS of this process
/// and of each zygote is sampled along the way. RSS must not grow once warm.
#[test]
#[ignore]
fn rss_stays_flat_over_many_executions() {
    use crucible_core::{Problem, Submission, TestCase, Verdict};
    let total: usize = std::env::var("CRUCIBLE_RSS_EXECUTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let sandbox = crucible_sandbox::ProcessSandbox::new(crucible_sandbox::SandboxConfig::default())
        .expect("sandbox");
    let mut judge = crucible_judge::Judge::new(
        sandbox,
        crucible_judge::Profiles::load(None).unwrap(),
        crucible_judge::JudgeOptions::default(),
    );
    judge.set_fork_server_slots(2);
    assert!(judge.fork_server("python").is_some());
    let problem = Problem {
        id: "add".into(),
        prompt: None,
        completion_prefix: String::new(),
        test_setup: String::new(),
        tests: vec![TestCase::Assert {
            code: "assert add(2, 3) == 5".into(),
            entry_point: None,
        }],
        reference: None,
        language: "python".into(),
        limits: None,
    };
    let sub = Submission {
        task_id: "add".into(),
        sample: 0,
        language: "python".into(),
        completion: "def add(a, b):\n    return a + b\n".into(),
    };
    let me = std::process::id();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let samples = std::sync::Mutex::new(Vec::new());
    let step = (total / 20).max(1);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= total {
                    break;
                }
                let r = judge.judge(&problem, &sub).expect("judgeable");
                assert_eq!(r.verdict, Verdict::Accepted, "{r:?}");
                if n.is_multiple_of(step) {
                    let zygotes: Vec<u64> =
                        zygote_pids().into_iter().map(|p| rss_kb(p).0).collect();
                    samples.lock().unwrap().push((n, rss_kb(me).0, zygotes));
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let mut samples = samples.into_inner().unwrap();
    samples.sort();
    eprintln!("executions  host_rss_kb  zygote_rss_kb");
    for (n, host, z) in &samples {
        eprintln!("{n:>10}  {host:>11}  {z:?}");
    }
    let zygote_peaks: Vec<u64> = zygote_pids().into_iter().map(|p| rss_kb(p).1).collect();
    eprintln!(
        "{total} executions in {:.1} s ({:.0}/s); peak RSS: host {} KiB, zygotes {:?} KiB",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        rss_kb(me).1,
        zygote_peaks
    );
    // Flat: after the first tenth (allocator and caches warm), growth stays under 4 MiB
    // for the host and 2 MiB per zygote.
    let warm = &samples[samples.len() / 10];
    let last = samples.last().unwrap();
    assert!(
        last.1 <= warm.1 + 4096,
        "host RSS grew: {} -> {} KiB",
        warm.1,
        last.1
    );
    let (wz, lz) = (warm.2.iter().max(), last.2.iter().max());
    if let (Some(&wz), Some(&lz)) = (wz, lz) {
        assert!(lz <= wz + 2048, "zygote RSS grew: {wz} -> {lz} KiB");
    }
}

#[test]
fn memory_charged_by_one_execution_is_not_left_to_the_next() {
    let h = ForkHarness::new(1);
    let limits = Limits {
        memory_bytes: 128 << 20,
        work_dir_bytes: 96 << 20,
        file_size_bytes: 96 << 20,
        ..tight_limits()
    };
    // Fills the work dir (tmpfs pages are charged to the execution's cgroup) and reads
    // files, then ends; the next execution needs most of the limit for itself.
    let r = h.run(
        "f = open('/work/big', 'wb')\n\
         for _ in range(80):\n    f.write(b'x' * (1 << 20))\n\
         f.close()\n\
         for root in ['/usr/lib/python3.11', '/usr/lib/python3/dist-packages']:\n    \
             import os\n    \
             for d, _, fs in os.walk(root):\n        \
                 for f in fs[:20]:\n            \
                     try:\n                open(os.path.join(d, f), 'rb').read()\n            \
                     except OSError:\n                pass\n",
        limits,
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    for _ in 0..3 {
        let r = h.run("data = bytearray(100 << 20); print(len(data))", limits);
        assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
        assert!(r.memory_kb < 128 << 10, "{r:#?}");
    }
    h.finish();
}
