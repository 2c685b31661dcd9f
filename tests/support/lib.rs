//! Shared helpers for the cross-crate tests under tests/.
//!
//! For the sandbox red team: a [`Harness`] owning a [`ProcessSandbox`] with its own
//! scratch dir, builders for Python [`RunSpec`]s, and "nothing left behind" checks
//! (processes, mounts, cgroups, scratch dirs) that are safe while other tests run
//! in parallel threads.

pub mod hacks;
mod judging;
pub use judging::{judge_in_order, shared_dataset};

use crucible_core::{Limits, Report, RunReport, RunStatus, TestOutcome};
use crucible_sandbox::{
    ExecRequest, ForkServer, ProcessSandbox, RunSpec, SandboxConfig, ZygoteSpec, PYTHON_ZYGOTE,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Debian's system Python.
pub const PYTHON: &str = "/usr/bin/python3";
/// The cgroup parent the red-team harnesses create runs under.
pub const CGROUP_PARENT: &str = "crucible-redteam";
/// Prefix of every harness scratch dir (under the system temp dir).
pub const SCRATCH_PREFIX: &str = "crucible-redteam-";

/// Host paths Python 3 needs (found with strace): the interpreter and stdlib under /usr,
/// the merged-usr symlinks, and the dynamic loader's cache.
pub fn python_mounts() -> Vec<PathBuf> {
    ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]
        .map(PathBuf::from)
        .to_vec()
}

/// The environment the judge gives programs.
pub fn default_env() -> Vec<(String, String)> {
    vec![
        ("PATH".into(), "/usr/bin:/bin".into()),
        ("TMPDIR".into(), "/work".into()),
        ("LANG".into(), "C.UTF-8".into()),
    ]
}

/// `python3 -S -c CODE` with the default environment and mounts.
pub fn python_spec(code: &str, limits: Limits) -> RunSpec {
    RunSpec {
        argv: vec![PYTHON.into(), "-S".into(), "-c".into(), code.into()],
        env: default_env(),
        files: vec![],
        stdin: vec![],
        limits,
        mounts: python_mounts(),
    }
}

/// Like [`python_spec`] but with the program written to /work/main.py.
pub fn python_file_spec(code: &str, limits: Limits) -> RunSpec {
    RunSpec {
        argv: vec![PYTHON.into(), "-S".into(), "/work/main.py".into()],
        files: vec![("main.py".into(), code.as_bytes().to_vec())],
        ..python_spec("", limits)
    }
}

/// Runs hold this shared; the leftover checks take it exclusively, so they only look
/// when no run of this test binary is in flight.
static RUNS: RwLock<()> = RwLock::new(());
/// Host processes tests started on purpose (sentinels); leftover checks ignore them.
static EXPECTED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static HARNESS_SEQ: AtomicU32 = AtomicU32::new(0);

/// Shared access: hold while a run is in flight.
pub fn runs_shared() -> RwLockReadGuard<'static, ()> {
    RUNS.read().unwrap_or_else(|e| e.into_inner())
}

/// Exclusive access: no run of this binary is in flight while held.
pub fn runs_exclusive() -> RwLockWriteGuard<'static, ()> {
    RUNS.write().unwrap_or_else(|e| e.into_inner())
}

/// A host process started by a test on purpose, excluded from leftover checks;
/// killed and reaped when dropped.
pub struct Sentinel {
    pub child: std::process::Child,
}

impl Sentinel {
    /// Starts `sleep SECONDS` on the host.
    pub fn sleep(seconds: u32) -> Sentinel {
        // Shared lock: a leftover check must not see it before it is registered.
        let _g = runs_shared();
        let child = std::process::Command::new("sleep")
            .arg(seconds.to_string())
            .spawn()
            .expect("spawn sleep");
        EXPECTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(child.id());
        Sentinel { child }
    }

    /// True while the process has not exited.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let id = self.child.id();
        EXPECTED
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|p| *p != id);
    }
}

/// A sandbox with its own scratch dir, removed on drop.
pub struct Harness {
    pub sandbox: ProcessSandbox,
    pub scratch: PathBuf,
}

impl Harness {
    /// A fresh sandbox whose scratch dirs go in a new dir of its own.
    pub fn new() -> Harness {
        let n = HARNESS_SEQ.fetch_add(1, Ordering::Relaxed);
        let scratch =
            std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}-{n}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("create scratch dir");
        // Shared lock: `new` clones a short-lived probe child.
        let _g = runs_shared();
        let sandbox = ProcessSandbox::new(SandboxConfig {
            scratch_dir: Some(scratch.clone()),
            cgroup_parent: Some(CGROUP_PARENT.into()),
        })
        .expect("ProcessSandbox::new");
        Harness { sandbox, scratch }
    }

    /// Runs `spec`, holding the shared run lock.
    pub fn run(&self, spec: &RunSpec) -> RunReport {
        let _g = runs_shared();
        self.sandbox.run(spec)
    }

    /// Asserts that no run left anything behind: no processes of ours (descendants of
    /// this test process other than sentinels, or processes under the sandbox's host
    /// uids), no mounts mentioning the scratch dirs, no run cgroups of this process,
    /// and an empty scratch dir. Waits until no run is in flight.
    pub fn assert_nothing_left(&self) {
        let _g = runs_exclusive();
        assert_nothing_left_in(&self.scratch);
    }
}

/// The checks of [`Harness::assert_nothing_left`], for a scratch dir; the caller makes
/// sure no run is in flight.
fn assert_nothing_left_in(scratch: &Path) {
    let procs = our_processes();
    assert!(procs.is_empty(), "leftover processes: {procs:?}");
    let mounts = mounts_mentioning(SCRATCH_PREFIX);
    assert!(mounts.is_empty(), "leftover mounts: {mounts:?}");
    let cgroups = leftover_cgroups();
    assert!(cgroups.is_empty(), "leftover cgroups: {cgroups:?}");
    let entries: Vec<_> = std::fs::read_dir(scratch)
        .expect("read scratch dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    assert!(entries.is_empty(), "leftover scratch dirs: {entries:?}");
}

/// The entry module fork-server tests give their zygotes: `main()` runs the file named
/// by `sys.argv[1]` as `__main__`, as `python3 FILE` does.
pub const FORK_RUNNER: &str = include_str!("runner.py");

/// Fork-server tests run one at a time: a zygote lives across runs, so "nothing left
/// behind" can only be checked when no other test's server is alive.
static FORK_SERIAL: Mutex<()> = Mutex::new(());

/// A fork server for tests, with its own scratch dir; [`ForkHarness::finish`] drops it
/// and checks that nothing is left behind.
pub struct ForkHarness {
    pub server: Option<ForkServer>,
    pub scratch: PathBuf,
    _serial: MutexGuard<'static, ()>,
}

impl ForkHarness {
    /// A server with `slots` zygotes running [`FORK_RUNNER`].
    pub fn new(slots: usize) -> ForkHarness {
        let serial = FORK_SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let n = HARNESS_SEQ.fetch_add(1, Ordering::Relaxed);
        let scratch =
            std::env::temp_dir().join(format!("{SCRATCH_PREFIX}{}-f{n}", std::process::id()));
        std::fs::create_dir_all(&scratch).expect("create scratch dir");
        let server = ForkServer::new(
            SandboxConfig {
                scratch_dir: Some(scratch.clone()),
                cgroup_parent: Some(CGROUP_PARENT.into()),
            },
            fork_spec(slots),
        )
        .expect("ForkServer::new");
        ForkHarness {
            server: Some(server),
            scratch,
            _serial: serial,
        }
    }

    /// The server.
    pub fn server(&self) -> &ForkServer {
        self.server.as_ref().expect("server alive")
    }

    /// Runs `code` as /work/main.py.
    pub fn run(&self, code: &str, limits: Limits) -> RunReport {
        self.server().run(&fork_request(code, limits))
    }

    /// Drops the server and asserts that nothing is left behind.
    pub fn finish(mut self) {
        drop(self.server.take());
        let _g = runs_exclusive();
        assert_nothing_left_in(&self.scratch);
    }
}

impl Drop for ForkHarness {
    fn drop(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir(&self.scratch);
    }
}

/// The zygote spec of [`ForkHarness`]: Python with the default environment and mounts,
/// [`FORK_RUNNER`] as the entry point.
pub fn fork_spec(slots: usize) -> ZygoteSpec {
    ZygoteSpec {
        argv: vec![
            PYTHON.into(),
            "-s".into(),
            "-P".into(),
            "/work/zygote.py".into(),
            "--entry".into(),
            "/work/runner.py".into(),
            "--preload".into(),
            "json,collections,random".into(),
        ],
        env: default_env(),
        mounts: python_mounts(),
        files: vec![
            ("zygote.py".into(), PYTHON_ZYGOTE.as_bytes().to_vec()),
            ("runner.py".into(), FORK_RUNNER.as_bytes().to_vec()),
        ],
        memory_bytes: 256 << 20,
        slots,
        warm: 1,
        in_place: false,
    }
}

/// An execution of `code` as /work/main.py.
pub fn fork_request(code: &str, limits: Limits) -> ExecRequest {
    ExecRequest {
        argv: vec!["/work/runner.py".into(), "/work/main.py".into()],
        files: vec![("main.py".into(), code.as_bytes().to_vec())],
        prepare: vec![],
        stdin: vec![],
        limits,
    }
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.scratch);
    }
}

/// (pid, ppid) of every process on the host.
fn host_processes() -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue; // exited meanwhile
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u32>().ok())
        };
        if let Some(ppid) = field("PPid:") {
            out.push((pid, ppid));
        }
    }
    out
}

/// Processes that are ours and not expected: descendants of this test process other
/// than sentinels and their children. A sandbox's processes are always descendants of
/// its init, which is our child (orphans inside are reparented to the init), while
/// sandboxes of other processes on the machine are not. Returned as (pid, command line).
pub fn our_processes() -> Vec<(u32, String)> {
    let me = std::process::id();
    let expected: HashSet<u32> = EXPECTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    let procs = host_processes();
    let parent: HashMap<u32, u32> = procs.iter().copied().collect();
    let is_ours = |pid: u32| {
        let mut cur = pid;
        for _ in 0..64 {
            if expected.contains(&cur) {
                return false;
            }
            match parent.get(&cur) {
                Some(&pp) if pp == me => return !expected.contains(&cur),
                Some(&pp) if pp > 1 => cur = pp,
                _ => return false,
            }
        }
        false
    };
    procs
        .iter()
        .filter(|&&(pid, _)| pid != me && is_ours(pid))
        .map(|&(pid, _)| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            (pid, cmd)
        })
        .collect()
}

/// Lines of /proc/self/mountinfo that mention `needle`.
pub fn mounts_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .map(String::from)
        .collect()
}

/// Run cgroups of this process left under the red-team parent in any hierarchy.
pub fn leftover_cgroups() -> Vec<PathBuf> {
    let prefix = format!("run-{}-", std::process::id());
    let mut out = Vec::new();
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return out;
    };
    let mut bases: Vec<PathBuf> = roots
        .flatten()
        .map(|e| e.path().join(CGROUP_PARENT))
        .collect();
    // A cgroup2 mount at /sys/fs/cgroup itself.
    bases.push(Path::new("/sys/fs/cgroup").join(CGROUP_PARENT));
    for base in bases {
        if let Ok(entries) = std::fs::read_dir(&base) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    out.push(e.path());
                }
            }
        }
    }
    out
}

/// Limits for attack tests: small and quick.
pub fn tight_limits() -> Limits {
    Limits {
        cpu_time_ms: 2_000,
        wall_time_ms: 5_000,
        memory_bytes: 256 << 20,
        output_bytes: 1 << 20,
        file_size_bytes: 1 << 20,
        processes: 16,
        open_files: 64,
        work_dir_bytes: 16 << 20,
    }
}

/// Parses the last stdout line of a report as JSON.
pub fn json_line(report: &RunReport) -> serde_json::Value {
    let line = report.stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {report:#?}"))
}

/// A failure message without the measurements in it ("time limit exceeded (cpu 2010
/// ms, wall 2100 ms)", "peak 262144 KiB"), which differ from run to run.
pub fn without_measurements(m: &Option<String>) -> Option<String> {
    m.as_ref().map(|m| {
        let mut out = String::new();
        let mut rest = m.as_str();
        while let Some(i) = rest.find("(cpu ").or_else(|| rest.find("(peak ")) {
            out.push_str(&rest[..i]);
            rest = rest[i..].find(')').map_or("", |j| &rest[i + j + 1..]);
        }
        out.push_str(rest);
        out
    })
}

/// A report with what may differ between two runs of the same program (CPU and wall
/// time, peak memory) cleared: what the two judge paths must agree on exactly.
pub fn comparable(r: &Report) -> Report {
    Report {
        cpu_ms: 0,
        wall_ms: 0,
        memory_kb: 0,
        message: without_measurements(&r.message),
        tests: r
            .tests
            .iter()
            .map(|t| TestOutcome {
                cpu_ms: 0,
                wall_ms: 0,
                memory_kb: 0,
                message: without_measurements(&t.message),
                ..t.clone()
            })
            .collect(),
        ..r.clone()
    }
}

/// Programs for the parallel-run tests, each with the status it must end in: one that
/// prints, one that sleeps past the wall clock, one that floods stdout, one that exits by
/// what it reads (stdin `in` gives exit status 1).
pub const MIXED_PROGRAMS: [(&str, RunStatus); 4] = [
    ("print(sum(range(1000)))", RunStatus::Ok),
    ("import time; time.sleep(5)", RunStatus::TimeLimitExceeded),
    (
        "import sys\nwhile True: sys.stdout.write('z' * 4096)",
        RunStatus::OutputLimitExceeded,
    ),
    (
        "import sys; sys.exit(sys.stdin.read() == 'in')",
        RunStatus::RuntimeError,
    ),
];

/// Checks run `i` of a parallel-run test, which ran `MIXED_PROGRAMS[i % 4]` with stdin
/// `in` and a 1.5 s wall clock.
pub fn assert_mixed_outcome(i: usize, r: &RunReport) {
    let want = MIXED_PROGRAMS[i % 4].1;
    assert_eq!(r.status, want, "run {i}: {r:#?}");
    if want == RunStatus::Ok {
        assert_eq!(r.stdout, "499500\n");
    }
}

/// Checks the identity report a program printed about itself (hostname, groups,
/// capabilities, NoNewPrivs, Seccomp, as the isolation tests' probe prints them): another
/// hostname than the host's, no supplementary groups, no capabilities in any set,
/// no_new_privs set and a seccomp filter in force.
pub fn assert_unprivileged(v: &serde_json::Value) {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert_ne!(v["hostname"].as_str().unwrap(), host.trim());
    assert_eq!(
        v["groups"],
        serde_json::json!([]),
        "no supplementary groups"
    );
    for c in v["caps"].as_array().unwrap() {
        assert_eq!(
            c.as_str().unwrap(),
            "0000000000000000",
            "no capabilities: {v}"
        );
    }
    assert_eq!(v["nnp"], "1");
    assert_eq!(v["seccomp"], "2");
}
