//! Red team for the native process sandbox: every limit and isolation claim gets a
//! program that tries to break it, and each test asserts the exact outcome and that the
//! run left nothing behind (processes, mounts, cgroups, scratch dirs).
//!
//! Tests run in parallel threads; each has its own harness (sandbox + scratch dir), runs
//! hold a shared lock and the leftover checks an exclusive one (see tests/support).

use crucible_core::{Limits, RunStatus};
use crucible_sandbox::{CgroupMode, ProcessSandbox, RunSpec, SandboxConfig};
use crucible_suite::{
    assert_mixed_outcome, assert_unprivileged, json_line, our_processes, python_file_spec,
    python_spec, runs_exclusive, tight_limits, Harness, Sentinel, MIXED_PROGRAMS,
};
use std::io::ErrorKind;
use std::net::TcpListener;
use std::path::Path;

const EPERM: i64 = libc::EPERM as i64;

#[test]
fn a_normal_program_runs_with_stdin_and_files() {
    let h = Harness::new();
    let mut spec = python_file_spec(
        "import sys, json\n\
         data = sys.stdin.buffer.read()\n\
         helper = open('/work/lib/helper.txt').read()\n\
         open('/work/out.txt', 'w').write('scratch')\n\
         print(json.dumps({'n': len(data), 'helper': helper, 'cwd': __import__('os').getcwd()}))\n",
        tight_limits(),
    );
    spec.files.push(("lib/helper.txt".into(), b"hi".to_vec()));
    // Bigger than a pipe buffer: stdin must not deadlock.
    spec.stdin = vec![b'a'; 3 << 20];
    let r = h.run(&spec);
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    assert_eq!(r.exit_code, Some(0));
    let v = json_line(&r);
    assert_eq!(v["n"], 3 << 20);
    assert_eq!(v["helper"], "hi");
    assert_eq!(v["cwd"], "/work");
    assert!(r.memory_kb > 1000, "memory measured: {r:#?}");
    h.assert_nothing_left();
}

#[test]
fn nonzero_exit_is_a_runtime_error() {
    let h = Harness::new();
    let r = h.run(&python_spec(
        "import sys; print('x'); sys.exit(3)",
        tight_limits(),
    ));
    assert_eq!(r.status, RunStatus::RuntimeError, "{r:#?}");
    assert_eq!(r.exit_code, Some(3));
    assert_eq!(r.stdout, "x\n");
    let r = h.run(&python_spec("import os; os.abort()", tight_limits()));
    assert_eq!(r.status, RunStatus::RuntimeError, "{r:#?}");
    assert_eq!(r.signal, Some(libc::SIGABRT));
    h.assert_nothing_left();
}

#[test]
fn infrastructure_failures_are_sandbox_errors() {
    let h = Harness::new();
    let mut spec = python_spec("pass", tight_limits());
    spec.argv[0] = "/usr/bin/no-such-interpreter".into();
    let r = h.run(&spec);
    assert_eq!(r.status, RunStatus::SandboxError, "{r:#?}");
    let msg = r.message.unwrap_or_default();
    assert!(
        msg.contains("execve") && msg.contains("no-such-interpreter"),
        "{msg}"
    );

    let mut spec = python_spec("pass", tight_limits());
    spec.files.push(("../escape".into(), vec![]));
    assert_eq!(h.run(&spec).status, RunStatus::SandboxError);

    let mut spec = python_spec("pass", tight_limits());
    spec.mounts.push("/proc".into());
    assert_eq!(h.run(&spec).status, RunStatus::SandboxError);
    h.assert_nothing_left();
}

#[test]
fn memory_bomb_is_memory_limit_exceeded() {
    let h = Harness::new();
    let limits = Limits {
        memory_bytes: 256 << 20,
        ..tight_limits()
    };
    // 16 MiB chunks of real (touched) memory, up to 2 GiB.
    let r = h.run(&python_spec(
        "chunks = []\n\
         for i in range(128):\n    chunks.append(b'x' * (16 << 20))\n\
         print('survived')",
        limits,
    ));
    if h.sandbox.cgroup_mode() == CgroupMode::None {
        // Without a cgroup only RLIMIT_AS stops it: Python's MemoryError.
        assert_eq!(r.status, RunStatus::RuntimeError, "{r:#?}");
    } else {
        assert_eq!(r.status, RunStatus::MemoryLimitExceeded, "{r:#?}");
        assert_eq!(r.signal, Some(libc::SIGKILL));
        assert!(
            r.memory_kb >= 200 << 10,
            "peak near the limit: {} KiB",
            r.memory_kb
        );
        assert!(
            r.memory_kb <= (256 << 10) + 1024,
            "peak within the limit: {} KiB",
            r.memory_kb
        );
    }
    assert!(!r.stdout.contains("survived"));
    h.assert_nothing_left();
}

#[test]
fn infinite_loop_is_time_limit_exceeded_near_the_cpu_limit() {
    let h = Harness::new();
    let limits = Limits {
        cpu_time_ms: 1_000,
        // Generous, so CPU time (not the wall clock of a busy machine) ends it.
        wall_time_ms: 20_000,
        ..tight_limits()
    };
    let r = h.run(&python_spec("while True: pass", limits));
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    assert!(
        (950..=2_200).contains(&r.cpu_ms),
        "cpu_ms {} should be near the 1000 ms limit",
        r.cpu_ms
    );
    assert!(r.message.unwrap_or_default().contains("cpu"));
    h.assert_nothing_left();
}

#[test]
fn cpu_limit_covers_the_whole_process_tree() {
    let h = Harness::new();
    let limits = Limits {
        cpu_time_ms: 1_000,
        wall_time_ms: 20_000,
        ..tight_limits()
    };
    // Four spinning processes: per-process RLIMIT_CPU alone would allow 4 s in all.
    let r = h.run(&python_spec(
        "import os\nos.fork(); os.fork()\nwhile True: pass",
        limits,
    ));
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    if h.sandbox.cgroup_mode() != CgroupMode::None {
        assert!(
            (950..=1_600).contains(&r.cpu_ms),
            "the tree's cpu time is capped near 1000 ms: {}",
            r.cpu_ms
        );
    }
    h.assert_nothing_left();
}

#[test]
fn memory_limit_covers_the_whole_process_tree() {
    let h = Harness::new();
    if h.sandbox.cgroup_mode() == CgroupMode::None {
        return; // only a cgroup can limit a tree's memory
    }
    let limits = Limits {
        memory_bytes: 256 << 20,
        ..tight_limits()
    };
    // Two processes with 160 MiB each: either alone fits, together they do not.
    let r = h.run(&python_spec(
        "import os, time\n\
         pid = os.fork()\n\
         data = b'x' * (160 << 20)\n\
         time.sleep(1)\n\
         if pid == 0:\n    os._exit(0)\n\
         _, status = os.waitpid(pid, 0)\n\
         print('both fit' if status == 0 else 'child died')",
        limits,
    ));
    assert_eq!(r.status, RunStatus::MemoryLimitExceeded, "{r:#?}");
    // The OOM killer takes one of the two; the other may live on.
    assert!(!r.stdout.contains("both fit"), "{r:#?}");
    h.assert_nothing_left();
}

#[test]
fn file_size_disk_and_descriptor_limits_hold() {
    let h = Harness::new();
    let limits = Limits {
        file_size_bytes: 1 << 20,
        work_dir_bytes: 4 << 20,
        open_files: 32,
        ..tight_limits()
    };
    let r = h.run(&python_spec(
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
    ));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    assert_eq!(
        v["big"].as_i64(),
        Some(libc::EFBIG as i64),
        "RLIMIT_FSIZE: {v}"
    );
    assert_eq!(
        v["fill"].as_i64(),
        Some(libc::ENOSPC as i64),
        "work dir size: {v}"
    );
    assert_eq!(
        v["fds"].as_i64(),
        Some(libc::EMFILE as i64),
        "RLIMIT_NOFILE: {v}"
    );
    h.assert_nothing_left();
}

#[test]
fn sleeping_forever_is_time_limit_exceeded_by_wall_clock() {
    let h = Harness::new();
    let limits = Limits {
        cpu_time_ms: 2_000,
        wall_time_ms: 1_500,
        ..tight_limits()
    };
    let r = h.run(&python_spec("import time; time.sleep(10_000)", limits));
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    assert!(
        r.message.as_deref().unwrap_or_default().contains("wall"),
        "{r:#?}"
    );
    assert!(
        r.wall_ms >= 1_500 && r.wall_ms < 4_500,
        "wall_ms {}",
        r.wall_ms
    );
    assert!(r.cpu_ms < 500, "a sleeper uses little cpu: {}", r.cpu_ms);
    assert_eq!(r.signal, Some(libc::SIGKILL));
    h.assert_nothing_left();
}

#[test]
fn fork_bomb_is_contained() {
    let h = Harness::new();
    // Alone, so process counts are not disturbed by other runs.
    let _only = runs_exclusive();
    let before = our_processes();
    assert!(before.is_empty(), "stray processes before: {before:?}");
    let limits = Limits {
        cpu_time_ms: 2_000,
        wall_time_ms: 4_000,
        processes: 16,
        ..tight_limits()
    };
    let r = h.sandbox.run(&python_spec(
        "import os\n\
         n = 0\n\
         while True:\n    try:\n        os.fork()\n    except OSError:\n        n += 1\n",
        limits,
    ));
    assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:#?}");
    assert!(
        r.wall_ms <= 4_000 + 2_000,
        "ended within its limits: {r:#?}"
    );
    let after = our_processes();
    assert!(after.is_empty(), "fork bomb left processes: {after:?}");
    drop(_only);
    h.assert_nothing_left();
}

#[test]
fn process_limit_caps_forks() {
    let h = Harness::new();
    let limits = Limits {
        processes: 8,
        ..tight_limits()
    };
    // Children sleep so they all exist at once; count how many forks succeed.
    let r = h.run(&python_spec(
        "import os, time, json\n\
         ok = 0\n\
         for i in range(40):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    \
         if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n    ok += 1\n\
         print(json.dumps({'forks': ok}))",
        limits,
    ));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let forks = json_line(&r)["forks"].as_i64().unwrap();
    assert!(
        (1..8).contains(&forks),
        "at most 8 processes in all, got {forks} forks"
    );
    h.assert_nothing_left();
}

#[test]
fn a_gigabyte_of_output_is_stopped_early() {
    let h = Harness::new();
    let limits = Limits {
        output_bytes: 1 << 20,
        cpu_time_ms: 30_000,
        wall_time_ms: 60_000,
        ..tight_limits()
    };
    let r = h.run(&python_spec(
        "import sys\n\
         chunk = b'x' * (1 << 20)\n\
         for _ in range(1024):\n    sys.stdout.buffer.write(chunk)\n\
         sys.stdout.flush()\n\
         sys.stderr.write('finished')",
        limits,
    ));
    assert_eq!(
        r.status,
        RunStatus::OutputLimitExceeded,
        "{}",
        r.message.clone().unwrap_or_default()
    );
    assert!(r.stdout_truncated);
    assert_eq!(r.stdout.len(), 1 << 20);
    assert!(
        !r.stderr.contains("finished"),
        "the program must not get to finish"
    );
    assert_eq!(r.signal, Some(libc::SIGKILL));
    // Writing 1 GiB through a pipe takes over a second here; the kill comes after 1 MiB.
    assert!(r.wall_ms < 1_000, "killed promptly: wall_ms {}", r.wall_ms);

    // The same on stderr.
    let r = h.run(&python_spec(
        "import sys\nwhile True:\n    sys.stderr.write('e' * 65536)",
        limits,
    ));
    assert_eq!(r.status, RunStatus::OutputLimitExceeded, "{r:#?}");
    assert!(r.stderr_truncated && !r.stdout_truncated);
    assert_eq!(r.stderr.len(), 1 << 20);
    h.assert_nothing_left();
}

#[test]
fn output_exactly_at_the_cap_is_fine() {
    let h = Harness::new();
    let limits = Limits {
        output_bytes: 1000,
        ..tight_limits()
    };
    let r = h.run(&python_spec(
        "import sys; sys.stdout.write('y' * 1000)",
        limits,
    ));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    assert_eq!(r.stdout.len(), 1000);
    assert!(!r.stdout_truncated);
    h.assert_nothing_left();
}

#[test]
fn one_byte_past_the_cap_is_an_output_limit_even_when_the_program_ends_first() {
    // The program is gone before the host reads its output (or at the same moment); the
    // verdict must not depend on which the host noticed first.
    let h = Harness::new();
    let limits = Limits {
        output_bytes: 1000,
        ..tight_limits()
    };
    for (code, on_stdout) in [
        ("import sys; sys.stdout.write('y' * 1001)", true),
        ("import sys; sys.stderr.write('e' * 1001)", false),
    ] {
        for _ in 0..5 {
            let r = h.run(&python_spec(code, limits));
            assert_eq!(r.status, RunStatus::OutputLimitExceeded, "{r:#?}");
            assert_eq!(
                (r.stdout_truncated, r.stderr_truncated),
                (on_stdout, !on_stdout)
            );
        }
    }
    h.assert_nothing_left();
}

#[test]
fn writes_outside_work_fail_and_the_host_is_unchanged() {
    let h = Harness::new();
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
        "/proc/sys/vm/drop_caches",
    ];
    let host_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let host_cache = std::fs::read("/etc/ld.so.cache").unwrap();
    for t in &targets[..8] {
        if *t != "/etc/ld.so.cache" {
            assert!(!Path::new(t).exists(), "{t} exists before the test");
        }
    }
    let code = format!(
        "import os, json\n\
         res = {{}}\n\
         for p in {targets:?}:\n    \
             try:\n        \
                 with open(p, 'w') as f: f.write('pwned')\n        \
                 res[p] = 'written'\n    \
             except OSError as e:\n        \
                 res[p] = e.errno\n\
         for d in ['/newdir', '/usr/newdir', '/tmp']:\n    \
             try:\n        os.mkdir(d)\n        res[d] = 'made'\n    \
             except OSError as e:\n        res[d] = e.errno\n\
         try:\n    os.symlink('/etc', '/work/etc-link'); open('/work/etc-link/pwned', 'w')\n    res['via-symlink'] = 'written'\n\
         except OSError as e:\n    res['via-symlink'] = e.errno\n\
         with open('/work/ok', 'w') as f: f.write('fine')\n\
         res['work'] = open('/work/ok').read()\n\
         print(json.dumps(res))"
    );
    let r = h.run(&python_spec(&code, tight_limits()));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    for t in targets
        .iter()
        .chain(&["/newdir", "/usr/newdir", "/tmp", "via-symlink"])
    {
        assert!(v[*t].is_i64(), "{t} must fail: {v}");
    }
    assert_eq!(v["work"], "fine");
    for t in &targets[..8] {
        if *t != "/etc/ld.so.cache" {
            assert!(!Path::new(t).exists(), "{t} appeared on the host");
        }
    }
    assert_eq!(std::fs::read("/etc/ld.so.cache").unwrap(), host_cache);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap(),
        host_hostname
    );
    h.assert_nothing_left();
}

#[test]
fn the_network_is_unreachable() {
    let h = Harness::new();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let code = format!(
        "import socket, json\n\
         res = {{}}\n\
         for name, fam in [('inet', socket.AF_INET), ('inet6', socket.AF_INET6), ('netlink', socket.AF_NETLINK)]:\n    \
             try:\n        socket.socket(fam, socket.SOCK_STREAM if fam != socket.AF_NETLINK else socket.SOCK_RAW)\n        res[name] = 'created'\n    \
             except OSError as e:\n        res[name] = e.errno\n\
         try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    res['connect'] = 'connected'\n\
         except OSError as e:\n    res['connect'] = e.errno\n\
         a, b = socket.socketpair(socket.AF_UNIX)\n\
         a.sendall(b'ping'); res['unix'] = b.recv(4).decode()\n\
         print(json.dumps(res))"
    );
    let r = h.run(&python_spec(&code, tight_limits()));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    let eafnosupport = libc::EAFNOSUPPORT as i64;
    assert_eq!(v["inet"].as_i64(), Some(eafnosupport), "{v}");
    assert_eq!(v["inet6"].as_i64(), Some(eafnosupport), "{v}");
    assert_eq!(v["netlink"].as_i64(), Some(eafnosupport), "{v}");
    assert!(v["connect"].is_i64(), "connecting must fail: {v}");
    assert_eq!(v["unix"], "ping", "local sockets still work");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the listener saw a connection: {other:?}"),
    }
    h.assert_nothing_left();
}

#[test]
fn secrets_are_unreadable() {
    let h = Harness::new();
    let repo_manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    assert!(repo_manifest.exists());
    let targets = [
        "/etc/shadow".to_string(),
        "/etc/passwd".to_string(),
        "/root".to_string(),
        "/root/.bashrc".to_string(),
        repo_manifest.display().to_string(),
        "/proc/1/root/etc/shadow".to_string(),
        "/proc/1/environ".to_string(),
    ];
    let code = format!(
        "import os, json\n\
         res = {{}}\n\
         for p in {targets:?}:\n    \
             try:\n        \
                 res[p] = os.listdir(p) if os.path.isdir(p) else open(p, 'rb').read(64).decode('latin1')\n    \
             except OSError as e:\n        res[p] = e.errno\n\
         print(json.dumps(res))"
    );
    let r = h.run(&python_spec(&code, tight_limits()));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    for t in &targets {
        assert!(v[t].is_i64(), "{t} must be unreadable: {v}");
    }

    // With all of /etc mounted, /etc/shadow is there but permission is denied.
    let mut spec = python_spec(
        "import json\n\
         res = {}\n\
         try:\n    open('/etc/shadow').read(); res['shadow'] = 'read'\n\
         except OSError as e:\n    res['shadow'] = e.errno\n\
         res['passwd_readable'] = len(open('/etc/passwd').read()) > 0\n\
         print(json.dumps(res))",
        tight_limits(),
    );
    spec.mounts.push("/etc".into());
    let r = h.run(&spec);
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    assert_eq!(v["shadow"].as_i64(), Some(libc::EACCES as i64), "{v}");
    assert_eq!(v["passwd_readable"], true);
    h.assert_nothing_left();
}

#[test]
fn kill_minus_one_harms_nothing_outside() {
    let h = Harness::new();
    let mut sentinel = Sentinel::sleep(60);
    let host_pid = sentinel.child.id();
    let code = format!(
        "import os, signal, json, time\n\
         res = {{}}\n\
         child = os.fork()\n\
         if child == 0:\n    time.sleep(100)\n    os._exit(0)\n\
         os.kill(-1, signal.SIGKILL)\n\
         _, st = os.waitpid(child, 0)\n\
         res['child_signal'] = os.WTERMSIG(st) if os.WIFSIGNALED(st) else None\n\
         for name, pid in [('host_pid', {host_pid}), ('init', 1)]:\n    \
             try:\n        os.kill(pid, signal.SIGKILL)\n        res[name] = 'sent'\n    \
             except OSError as e:\n        res[name] = e.errno\n\
         res['alive'] = True\n\
         print(json.dumps(res))"
    );
    let r = h.run(&python_spec(&code, tight_limits()));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    assert_eq!(v["alive"], true);
    assert_eq!(
        v["child_signal"],
        libc::SIGKILL,
        "kill(-1) reaches the sandbox's own processes"
    );
    assert_eq!(
        v["host_pid"].as_i64(),
        Some(libc::ESRCH as i64),
        "host pids are invisible: {v}"
    );
    assert!(sentinel.alive(), "the host sentinel was killed");
    drop(sentinel);
    h.assert_nothing_left();
}

#[test]
fn privileged_operations_fail() {
    let h = Harness::new();
    let code = "import ctypes, json\n\
        libc = ctypes.CDLL(None, use_errno=True)\n\
        libc.syscall.restype = ctypes.c_long\n\
        res = {}\n\
        def attempt(name, f):\n    \
            ctypes.set_errno(0)\n    \
            r = f()\n    \
            res[name] = ctypes.get_errno() if r == -1 else 'succeeded'\n\
        attempt('ptrace_traceme', lambda: libc.ptrace(0, 0, None, None))\n\
        attempt('ptrace_attach_init', lambda: libc.ptrace(16, 1, None, None))\n\
        attempt('mount', lambda: libc.mount(b'none', b'/work', b'tmpfs', 0, None))\n\
        attempt('umount', lambda: libc.umount2(b'/usr', 2))\n\
        attempt('unshare_user', lambda: libc.unshare(0x10000000))\n\
        attempt('unshare_net', lambda: libc.unshare(0x40000000))\n\
        attempt('chroot', lambda: libc.chroot(b'/work'))\n\
        attempt('clone_newuser', lambda: libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0))\n\
        attempt('setns', lambda: libc.syscall(308, 0, 0))\n\
        attempt('bpf', lambda: libc.syscall(321, 0, 0, 0))\n\
        attempt('keyctl', lambda: libc.syscall(250, 0, 0, 0, 0, 0))\n\
        attempt('perf_event_open', lambda: libc.syscall(298, 0, 0, -1, -1, 0))\n\
        attempt('io_uring_setup', lambda: libc.syscall(425, 1, 0))\n\
        attempt('userfaultfd', lambda: libc.syscall(323, 0))\n\
        attempt('setuid0', lambda: libc.setuid(0))\n\
        attempt('sethostname', lambda: libc.sethostname(b'evil', 4))\n\
        attempt('clone3', lambda: libc.syscall(435, 0, 0))\n\
        print(json.dumps(res))";
    let r = h.run(&python_spec(code, tight_limits()));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    for k in [
        "ptrace_traceme",
        "ptrace_attach_init",
        "mount",
        "umount",
        "unshare_user",
        "unshare_net",
        "chroot",
        "clone_newuser",
        "setns",
        "bpf",
        "keyctl",
        "perf_event_open",
        "io_uring_setup",
        "userfaultfd",
        "setuid0",
        "sethostname",
    ] {
        assert_eq!(v[k].as_i64(), Some(EPERM), "{k}: {v}");
    }
    assert_eq!(v["clone3"].as_i64(), Some(libc::ENOSYS as i64), "{v}");
    h.assert_nothing_left();
}

#[test]
fn environment_identity_and_privileges_inside() {
    let h = Harness::new();
    let env = vec![
        ("ONLY".to_string(), "this".to_string()),
        ("PATH".to_string(), "/usr/bin".to_string()),
        ("EMPTY".to_string(), String::new()),
    ];
    let spec = RunSpec {
        env: env.clone(),
        ..python_spec(
            "import os, json\n\
             environ = [e.split('=', 1) for e in open('/proc/self/environ').read().split('\\0') if e]\n\
             status = dict(l.split(':\\t', 1) for l in open('/proc/self/status').read().splitlines() if ':\\t' in l)\n\
             print(json.dumps({'environ': environ, 'hostname': os.uname().nodename,\n\
                 'uid': os.getuid(), 'euid': os.geteuid(), 'gid': os.getgid(), 'groups': os.getgroups(),\n\
                 'caps': [status['CapInh'], status['CapPrm'], status['CapEff'], status['CapBnd'], status['CapAmb']],\n\
                 'nnp': status['NoNewPrivs'], 'seccomp': status['Seccomp'], 'pid': os.getpid(),\n\
                 'root': sorted(os.listdir('/'))}))",
            tight_limits(),
        )
    };
    let r = h.run(&spec);
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    let v = json_line(&r);
    let environ: Vec<(String, String)> = v["environ"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(environ, env, "the environment is exactly spec.env");
    assert_unprivileged(&v);
    assert_ne!(v["uid"], 0);
    assert_ne!(v["euid"], 0);
    assert_ne!(v["gid"], 0);
    assert_eq!(v["pid"], 2, "the program is pid 2 under the sandbox's init");
    assert_eq!(
        v["root"],
        serde_json::json!(["bin", "dev", "etc", "lib", "lib64", "proc", "usr", "work"])
    );
    h.assert_nothing_left();
}

#[test]
fn background_children_do_not_outlive_the_run() {
    let h = Harness::new();
    let r = h.run(&python_spec(
        "import os, time\n\
         if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(1000)\n    os._exit(0)\n\
         time.sleep(0.2)\n\
         print('parent done')",
        tight_limits(),
    ));
    assert_eq!(r.status, RunStatus::Ok, "{r:#?}");
    assert_eq!(r.stdout, "parent done\n");
    assert!(
        r.wall_ms < 3_000,
        "the run does not wait for the daemon: {}",
        r.wall_ms
    );
    h.assert_nothing_left();
}

#[test]
fn many_parallel_runs_share_one_sandbox() {
    let h = Harness::new();
    let sandbox: &ProcessSandbox = &h.sandbox;
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                s.spawn(move || {
                    let _g = crucible_suite::runs_shared();
                    let code = MIXED_PROGRAMS[i % 4].0;
                    let mut limits = tight_limits();
                    limits.wall_time_ms = 1_500;
                    let mut spec = python_spec(code, limits);
                    spec.stdin = b"in".to_vec();
                    (i, sandbox.run(&spec))
                })
            })
            .collect();
        for hd in handles {
            let (i, r) = hd.join().unwrap();
            assert_mixed_outcome(i, &r);
        }
    });
    h.assert_nothing_left();
}

#[test]
fn bad_configs_are_rejected() {
    let _g = crucible_suite::runs_shared();
    let err = ProcessSandbox::new(SandboxConfig {
        scratch_dir: Some("/definitely/not/here".into()),
        cgroup_parent: None,
    });
    assert!(err.is_err());
    let err = ProcessSandbox::new(SandboxConfig {
        scratch_dir: None,
        cgroup_parent: Some("../escape".into()),
    });
    assert!(err.is_err());
}
