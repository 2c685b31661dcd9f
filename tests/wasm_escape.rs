//! Escape attempts from inside wasm guests (python-wasm and c-wasm): each must fail, and
//! end with the verdict the matching limit gives. The guests come from
//! scripts/fetch-wasm-guests.sh; without them each test is skipped with a message (with
//! CRUCIBLE_REQUIRE_WASM=1, as CI sets it, a missing guest fails the test instead).

use crucible_core::{Limits, RunReport, RunStatus};
use crucible_judge::{Judge, JudgeOptions, Profiles};
use crucible_sandbox::{ProcessSandbox, SandboxConfig};
use std::sync::OnceLock;

fn judge() -> &'static Judge {
    static J: OnceLock<Judge> = OnceLock::new();
    J.get_or_init(|| {
        let sandbox = ProcessSandbox::new(SandboxConfig::default()).expect("sandbox");
        Judge::new(
            sandbox,
            Profiles::load(None).expect("profiles"),
            JudgeOptions::default(),
        )
    })
}

/// True when `lang` can run here; otherwise says why (and fails under CI).
fn available(lang: &str) -> bool {
    match judge().profiles().get(lang) {
        Ok(_) => true,
        Err(e) => {
            assert!(
                std::env::var_os("CRUCIBLE_REQUIRE_WASM").is_none(),
                "{lang} is required here: {e}"
            );
            eprintln!("skipped: {e}");
            false
        }
    }
}

fn limits() -> Limits {
    Limits::default().with_time_ms(2_000).with_memory_mb(64)
}

fn run(lang: &str, source: &str) -> RunReport {
    judge()
        .run_source(lang, source, b"", Some(limits()))
        .expect("runnable")
}

#[test]
fn python_cannot_read_host_files() {
    if !available("python-wasm") {
        return;
    }
    let r = run(
        "python-wasm",
        r#"
import os
for path in ["/etc/passwd", "/etc/shadow", "/root", "/proc/self/environ", "/work/../../etc/passwd", "../etc/passwd"]:
    try:
        with open(path) as f:
            print("READ", path, f.read()[:20])
    except OSError as e:
        print("blocked", path, type(e).__name__)
print(sorted(os.listdir("/work")))
try:
    print("ROOT", os.listdir("/"))
except OSError as e:
    print("blocked /", type(e).__name__)
"#,
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    assert!(!r.stdout.contains("READ"), "{}", r.stdout);
    assert!(!r.stdout.contains("root:"), "{}", r.stdout);
    assert_eq!(r.stdout.matches("blocked").count(), 7, "{}", r.stdout);
    assert!(r.fuel_used.is_some());
}

#[test]
fn c_cannot_read_host_files() {
    if !available("c-wasm") {
        return;
    }
    let r = run(
        "c-wasm",
        r#"
#include <stdio.h>
int main(void) {
    const char *paths[] = {"/etc/passwd", "/work/../etc/passwd", "../../etc/passwd", "/proc/self/maps"};
    for (int i = 0; i < 4; i++) {
        FILE *f = fopen(paths[i], "r");
        if (f) { printf("READ %s\n", paths[i]); fclose(f); }
        else printf("blocked %s\n", paths[i]);
    }
    return 0;
}
"#,
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.stdout.matches("blocked").count(), 4, "{}", r.stdout);
}

#[test]
fn python_cannot_open_a_socket() {
    if !available("python-wasm") {
        return;
    }
    // A listener on the host's loopback: the guest must not reach it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("listen");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let r = run(
        "python-wasm",
        &format!(
            r#"
import socket
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", {port}))
    print("CONNECTED")
except Exception as e:
    print("blocked", type(e).__name__, e)
"#
        ),
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    assert!(r.stdout.starts_with("blocked"), "{}", r.stdout);
    assert!(listener.accept().is_err(), "a connection reached the host");
}

#[test]
fn c_cannot_open_a_socket() {
    if !available("c-wasm") {
        return;
    }
    // wasi-libc has no socket(): the program cannot even be written against it, so the
    // attempt is the raw WASI call a guest could make, sock_accept on a guessed fd.
    let r = run(
        "c-wasm",
        r#"
#include <stdio.h>
#include <wasi/api.h>
int main(void) {
    int ok = 0;
    for (int fd = 0; fd < 64; fd++) {
        __wasi_fd_t conn;
        if (__wasi_sock_accept(fd, 0, &conn) == 0) { printf("ACCEPTED on %d\n", fd); ok = 1; }
    }
    if (!ok) printf("blocked\n");
    return 0;
}
"#,
    );
    assert_eq!(r.status, RunStatus::Ok, "{r:?}");
    assert_eq!(r.stdout.trim(), "blocked", "{}", r.stdout);
}

#[test]
fn python_memory_growth_is_memory_limit_exceeded() {
    if !available("python-wasm") {
        return;
    }
    let r = run(
        "python-wasm",
        "x = []\nwhile True:\n    x.append(bytearray(1 << 20))\n",
    );
    assert_eq!(r.status, RunStatus::MemoryLimitExceeded, "{r:?}");
    assert!(
        r.memory_kb <= 64 << 10,
        "peak {} KiB over the limit",
        r.memory_kb
    );
}

#[test]
fn c_memory_growth_is_memory_limit_exceeded() {
    if !available("c-wasm") {
        return;
    }
    let r = run(
        "c-wasm",
        r#"
#include <stdlib.h>
/* A list the compiler cannot prove unused, so no allocation is elided. */
struct node { struct node *next; char pad[1 << 20]; };
struct node *volatile head;
int main(void) {
    for (;;) {
        struct node *n = malloc(sizeof *n);
        if (!n) return 3;
        n->pad[0] = 1;
        n->next = head;
        head = n;
    }
}
"#,
    );
    assert_eq!(r.status, RunStatus::MemoryLimitExceeded, "{r:?}");
}

#[test]
fn python_deep_recursion_is_contained() {
    if !available("python-wasm") {
        return;
    }
    // Python's own limit stops plain recursion with RecursionError.
    let r = run("python-wasm", "def f(n):\n    return f(n + 1)\nf(0)\n");
    assert_eq!(r.status, RunStatus::RuntimeError, "{r:?}");
    assert!(r.stderr.contains("RecursionError"), "{}", r.stderr);
    // With the limit lifted, recursion through C code (repr of a deep list) must end in a
    // clean error, not a crash of the host.
    let r = run(
        "python-wasm",
        "import sys\nsys.setrecursionlimit(10**7)\nx = []\nfor _ in range(10**6):\n    x = [x]\nprint(len(repr(x)))\n",
    );
    assert!(
        matches!(
            r.status,
            RunStatus::RuntimeError | RunStatus::MemoryLimitExceeded
        ),
        "{r:?}"
    );
}

#[test]
fn c_stack_overflow_traps() {
    if !available("c-wasm") {
        return;
    }
    let r = run(
        "c-wasm",
        r#"
#include <stdio.h>
int f(volatile int n) { volatile char pad[256]; pad[0] = (char)n; return f(n + 1) + pad[0]; }
int main(void) { printf("%d\n", f(0)); return 0; }
"#,
    );
    assert_eq!(r.status, RunStatus::RuntimeError, "{r:?}");
    let msg = r.message.unwrap_or_default();
    assert!(
        msg.contains("stack overflow") || msg.contains("out of bounds"),
        "{msg}"
    );
}

#[test]
fn python_gigabyte_of_stdout_is_output_limit_exceeded() {
    if !available("python-wasm") {
        return;
    }
    let started = std::time::Instant::now();
    let r = run(
        "python-wasm",
        "import sys\nchunk = 'x' * (1 << 20)\nfor _ in range(1024):\n    sys.stdout.write(chunk)\n",
    );
    assert_eq!(r.status, RunStatus::OutputLimitExceeded, "{r:?}");
    assert!(r.stdout_truncated);
    assert_eq!(r.stdout.len() as u64, limits().output_bytes);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "not stopped at the cap"
    );
}

#[test]
fn c_gigabyte_of_stdout_is_output_limit_exceeded() {
    if !available("c-wasm") {
        return;
    }
    let r = run(
        "c-wasm",
        r#"
#include <stdio.h>
#include <string.h>
static char buf[1 << 20];
int main(void) {
    memset(buf, 'x', sizeof buf);
    for (int i = 0; i < 1024; i++) fwrite(buf, 1, sizeof buf, stdout);
    return 0;
}
"#,
    );
    assert_eq!(r.status, RunStatus::OutputLimitExceeded, "{r:?}");
    assert!(r.stdout_truncated);
}

#[test]
fn python_cannot_fill_the_host_disk() {
    if !available("python-wasm") {
        return;
    }
    let r = run(
        "python-wasm",
        "with open('/work/big', 'wb') as f:\n    while True:\n        f.write(b'x' * (1 << 20))\n",
    );
    assert_ne!(r.status, RunStatus::Ok, "{r:?}");
    assert_ne!(r.status, RunStatus::SandboxError, "{r:?}");
}
