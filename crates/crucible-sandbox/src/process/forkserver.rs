//! A fork server for interpreted languages: per worker slot, a long-lived sandbox whose
//! program is a warm interpreter (the zygote) that forks one child per execution.
//!
//! The zygote is launched exactly like a [`ProcessSandbox`] run (new user, pid, net,
//! mount, ipc and uts namespaces; a read-only root; its own cgroup; no_new_privs and a
//! seccomp filter) except that it stays root of its namespaces, keeping only the
//! capabilities it needs to isolate its children (and an empty bounding set), under a
//! filter that also allows `mount`, `umount2` and `unshare(CLONE_NEWIPC)`. It runs
//! trusted code only; each child adds a small filter that refuses those three again, so
//! submitted code runs under exactly the program policy.
//!
//! Each execution: the host resets the slot's exec cgroup (the peak-memory and CPU
//! counters; memory and pids limits when they change) and sends the request with its
//! descriptors (stdin memfd, stdout/stderr pipes, a memfd with the files) over a
//! SOCK_SEQPACKET socket. The zygote enters a fresh IPC namespace, mounts a fresh
//! size-limited tmpfs on /work and forks. The child joins the exec cgroup through
//! `cgroup.procs` files the host opened and handed the zygote at start (the kernel checks
//! the opener's credentials, so the child needs no rights over the cgroup), drops to the
//! unprivileged program uid (no capabilities, so it can signal neither the zygote nor
//! the init), writes the files, sets stdio, rlimits and the program seccomp filter,
//! closes every other descriptor and runs the entry point. The host enforces the wall
//! clock, the cgroup's CPU time and the output caps exactly as a fresh run does, kills
//! everything left in the exec cgroup at the end, and classifies the outcome with the
//! same code. A zygote that dies or stops answering is detected (socket EOF, the init's
//! pidfd, a timeout); the run in flight gets `sandbox_error` and the slot starts a new
//! zygote for its next run.

use super::cgroup::ExecCgroup;
use super::child::Rlimit;
use super::outcome::{Facts, KillReason};
use super::{
    file_path, hard_limit, io_err, pipe, read_records, rlimits, seccomp, set_nonblocking,
    setup_error, stdin_memfd, Capture, CgroupMode, LaunchOptions, Launched, ProcessSandbox,
    RunError, SandboxConfig, SandboxError, PROGRAM_ID,
};
use crucible_core::{Limits, RunReport};
use serde::Deserialize;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The Python zygote (`python3 -s -P zygote.py --entry FILE --preload a,b,c`): write it
/// into the zygote's files and name it in [`ZygoteSpec::argv`].
pub const PYTHON_ZYGOTE: &str = include_str!("../../zygote/python.py");

/// Capabilities a zygote keeps inside its namespaces: SETGID and SETUID to drop its
/// children to the program's ids, SETPCAP to empty its bounding set once started,
/// SYS_ADMIN for each child's IPC namespace and work dir mount. Every other capability
/// leaves its bounding set before it starts.
const ZYGOTE_CAPS: u64 = (1 << 6) | (1 << 7) | (1 << 8) | (1 << 21);
/// How long a zygote may take to load and say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a zygote gets to report a child we killed before we give up on it.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long the processes left in an exec cgroup may take to die.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the CPU time of the exec cgroup is compared with the limit.
const CPU_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// How often the output pipes are read while an execution has written little. Reading
/// them on every write woke the host once per test record (about ten times per
/// HumanEval run), and on a busy machine each wake-up takes the CPU from a child.
const LAZY_DRAIN: Duration = Duration::from_millis(4);
/// Output read in one lazy drain past which the pipes are read as soon as they have
/// something (a program that prints a lot is not held up by full pipes).
const EAGER_ABOVE: u64 = 64 << 10;
/// The output pipes' capacity, where the kernel allows it: room for a lazy drain's
/// worth of output, so a child rarely blocks on a full pipe between drains.
const PIPE_BYTES: i32 = 1 << 20;
/// Memory still charged to an empty exec cgroup past which it is reclaimed before the
/// next exec (page cache of files a program read, for instance).
const RECLAIM_ABOVE: u64 = 4 << 20;
/// The zygote's own limits: its memory and processes (the cgroup the init, the zygote
/// and a child not yet moved share) and its work dir.
const ZYGOTE_PROCESSES: u32 = 16;
const ZYGOTE_WORK_BYTES: u64 = 16 << 20;

/// Numbers fork servers in this process, so their cgroups never collide.
static SERVER_COUNTER: AtomicU64 = AtomicU64::new(0);

/// What every zygote of a [`ForkServer`] is.
#[derive(Clone, Debug)]
pub struct ZygoteSpec {
    /// The zygote's command; `argv[0]` is an absolute path inside the sandbox. For
    /// Python: the interpreter, its flags, `/work/zygote.py --entry /work/ENTRY.py
    /// --preload mod,mod` with [`PYTHON_ZYGOTE`] and the entry file in `files`.
    pub argv: Vec<String>,
    /// The whole environment of the zygote, and so of every execution.
    pub env: Vec<(String, String)>,
    /// Host paths bind-mounted read-only, as in [`RunSpec`](crate::RunSpec).
    pub mounts: Vec<PathBuf>,
    /// Files written into the zygote's work dir. Executions never see this dir: each
    /// gets a fresh one mounted over it.
    pub files: Vec<(String, Vec<u8>)>,
    /// Memory limit of the zygote's own cgroup (the zygote, its init, and a child before
    /// it is moved to its exec cgroup).
    pub memory_bytes: u64,
    /// Most zygotes, and so executions at once; each beyond `warm` is started on first
    /// demand.
    pub slots: usize,
    /// Zygotes started, side by side, when the server is made (at least 1, at most
    /// `slots`).
    pub warm: usize,
    /// Each execution runs in the zygote itself, one after another, instead of in a
    /// forked child: no fork, cgroup reset or work dir per execution. For trusted entry
    /// points only (the judge's checker), which must not run submitted code; the zygote
    /// drops to the program's ids and every capability once it has loaded, and the
    /// entry's `run_in_place(argv, prepared, stdin, stdout, stderr)` is called with the
    /// execution's descriptors. An execution past its wall clock, over its output cap,
    /// or that kills its zygote ends with what it had written, and the slot gets a new
    /// zygote. Its CPU time and memory are the zygote's own (rusage).
    pub in_place: bool,
}

/// One execution in a fork server.
#[derive(Clone, Debug)]
pub struct ExecRequest {
    /// `sys.argv` for the zygote's entry point (its `main()`), as if started as
    /// `python3 ARGV...`.
    pub argv: Vec<String>,
    /// Files written into the execution's fresh work dir (/work) before it starts, owned
    /// by the program's user, with the same rules as [`RunSpec::files`](crate::RunSpec).
    pub files: Vec<(String, Vec<u8>)>,
    /// Paths among `files` that hold only the caller's own data, never submitted code,
    /// offered to the entry point's `prepare(argv, files)` in the zygote before it forks
    /// (for Python's harness: the tests spec, parsed and compiled once in the warm
    /// zygote). A file the entry point takes is not written into the work dir, so the
    /// entry point must not need it there (the harness deletes its spec unread by the
    /// program either way).
    pub prepare: Vec<String>,
    /// Everything the execution reads on stdin.
    pub stdin: Vec<u8>,
    /// The limits of the execution (see [`Limits`]).
    pub limits: Limits,
}

/// A pool of zygotes, one per slot, each running one execution at a time. `run` may be
/// called from many threads; a call waits for a free slot.
pub struct ForkServer {
    sandbox: ProcessSandbox,
    spec: ZygoteSpec,
    id: u64,
    init_message: Vec<u8>,
    pool: Mutex<Pool>,
    freed: Condvar,
    spawner: Option<Spawner>,
}

impl std::fmt::Debug for ForkServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForkServer")
            .field("id", &self.id)
            .field("slots", &self.spec.slots)
            .finish_non_exhaustive()
    }
}

/// Slots not in use, and how many exist.
struct Pool {
    idle: Vec<Slot>,
    created: usize,
}

/// One worker slot: its exec cgroup (reused by every execution) and its zygote (None
/// until first use and after the last one died).
struct Slot {
    index: usize,
    exec_cgroup: ExecCgroup,
    zygote: Option<Zygote>,
    execs: u64,
}

/// A running zygote. Dropping it kills its init, and with it the whole namespace.
struct Zygote {
    launched: Launched,
    sock: OwnedFd,
    /// The zygote's pid in our pid namespace.
    pid: i32,
}

impl Zygote {
    /// True when the zygote's sandbox is still running and it has said nothing since
    /// its last execution (a closed socket reads as readable too).
    fn idle_and_alive(&self) -> bool {
        let mut fds = [
            pollfd(self.sock.as_raw_fd()),
            pollfd(self.launched.child.pidfd.as_raw_fd()),
        ];
        // SAFETY: a valid pollfd array; zero timeout.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
        r == 0
    }
}

/// A message from a zygote or its child.
#[derive(Debug, Default, Deserialize)]
struct Message {
    op: String,
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    status: Option<i32>,
    #[serde(default)]
    utime_us: u64,
    #[serde(default)]
    stime_us: u64,
    #[serde(default)]
    maxrss_kb: u64,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    missing: Vec<String>,
}

/// Why an execution could not be completed.
struct ExecFailure {
    message: String,
    /// The zygote can no longer be trusted (dead, silent, or out of step): replace it.
    zygote_broken: bool,
    /// What the execution still gets (an in-place execution that ended its zygote).
    report: Option<Box<RunReport>>,
}

impl ExecFailure {
    fn broken(message: impl Into<String>) -> ExecFailure {
        ExecFailure {
            message: message.into(),
            zygote_broken: true,
            report: None,
        }
    }

    fn soft(message: impl Into<String>) -> ExecFailure {
        ExecFailure {
            message: message.into(),
            zygote_broken: false,
            report: None,
        }
    }
}

impl From<RunError> for ExecFailure {
    fn from(message: RunError) -> ExecFailure {
        ExecFailure::soft(message)
    }
}

impl ForkServer {
    /// A fork server over a new [`ProcessSandbox`] made with `config`.
    pub fn new(config: SandboxConfig, spec: ZygoteSpec) -> Result<ForkServer, SandboxError> {
        ForkServer::with_sandbox(&ProcessSandbox::new(config)?, spec)
    }

    /// A fork server whose zygotes are sandboxed like `sandbox`'s runs. Starts the first
    /// `spec.warm` zygotes (which also checks that the spec works); the others start on
    /// demand.
    ///
    /// Fails when the host cannot give executions the isolation of a fresh run: the
    /// fork server needs root (a separate, unprivileged program uid, so that children
    /// cannot signal their zygote) and a cgroup hierarchy (so that each execution's
    /// memory, processes and CPU time are its own).
    pub fn with_sandbox(
        sandbox: &ProcessSandbox,
        spec: ZygoteSpec,
    ) -> Result<ForkServer, SandboxError> {
        let unavailable = |why: &str| SandboxError::ForkServer(why.to_string());
        if !sandbox.has_program_ids() {
            return Err(unavailable(
                "needs root, to give executions a uid apart from their zygote's",
            ));
        }
        if sandbox.cgroup_mode() == CgroupMode::None {
            return Err(unavailable(
                "needs a cgroup hierarchy for per-execution memory, pids and CPU limits",
            ));
        }
        if spec.argv.first().is_none_or(|a| !a.starts_with('/')) {
            return Err(unavailable("the zygote's argv[0] must be an absolute path"));
        }
        let init = serde_json::json!({
            "op": "init",
            "seccomp": hex(&seccomp::to_bytes(&seccomp::build(seccomp::Policy::ZygoteChild))),
            "uid": PROGRAM_ID,
            "gid": PROGRAM_ID,
            "in_place": spec.in_place,
        });
        let server = ForkServer {
            sandbox: sandbox.clone(),
            id: SERVER_COUNTER.fetch_add(1, Ordering::Relaxed),
            init_message: init.to_string().into_bytes(),
            spec: ZygoteSpec {
                slots: spec.slots.max(1),
                ..spec
            },
            pool: Mutex::new(Pool {
                idle: Vec::new(),
                created: 0,
            }),
            freed: Condvar::new(),
            spawner: Some(Spawner::start(sandbox.clone())),
        };
        // The first `warm` zygotes load side by side.
        let warm = server.spec.warm.clamp(1, server.spec.slots);
        let mut starting = Vec::with_capacity(warm);
        for index in 0..warm {
            let slot = server.new_slot(index).map_err(|e| unavailable(&e))?;
            let (z, started) = server
                .start_zygote(&slot.exec_cgroup)
                .map_err(|e| SandboxError::ForkServer(format!("starting a zygote: {e}")))?;
            starting.push((slot, z, started));
        }
        let mut ready = Vec::with_capacity(warm);
        for (mut slot, mut z, started) in starting {
            await_ready(&mut z, started)
                .map_err(|e| SandboxError::ForkServer(format!("a zygote failed: {e}")))?;
            slot.zygote = Some(z);
            ready.push(slot);
        }
        {
            let mut pool = server.lock_pool();
            pool.idle = ready;
            pool.created = warm;
        }
        tracing::debug!(
            id = server.id,
            slots = server.spec.slots,
            "fork server ready"
        );
        Ok(server)
    }

    /// Most executions at once.
    pub fn slots(&self) -> usize {
        self.spec.slots
    }

    /// Runs one execution in a zygote's child and blocks until it has ended and
    /// everything it left is gone.
    ///
    /// Never panics: infrastructure failures (a zygote that died or stopped answering,
    /// a cgroup that could not be set) come back as a report with status `SandboxError`,
    /// and the slot gets a new zygote for its next execution.
    pub fn run(&self, req: &ExecRequest) -> RunReport {
        self.run_inner(req, None)
    }

    /// Runs one execution, like [`run`](Self::run), with `channel` (a socket) as its
    /// stdin instead of `req.stdin`, for a program that talks with another process over
    /// it. Our copy is closed once the zygote has its own, so the other end sees EOF
    /// when the execution is gone.
    pub fn run_with_channel(&self, req: &ExecRequest, channel: OwnedFd) -> RunReport {
        self.run_inner(req, Some(channel))
    }

    fn run_inner(&self, req: &ExecRequest, channel: Option<OwnedFd>) -> RunReport {
        let started = Instant::now();
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.try_run(req, channel)));
        let report = match r {
            Ok(Ok(report)) => report,
            Ok(Err(msg)) => {
                tracing::warn!(error = %msg, "fork server run failed");
                let mut r = RunReport::sandbox_error(msg);
                r.wall_ms = started.elapsed().as_millis() as u64;
                r
            }
            Err(_) => RunReport::sandbox_error("internal error: the fork server panicked"),
        };
        tracing::debug!(
            status = ?report.status,
            cpu_ms = report.cpu_ms,
            wall_ms = report.wall_ms,
            memory_kb = report.memory_kb,
            "fork server run finished"
        );
        report
    }

    fn lock_pool(&self) -> std::sync::MutexGuard<'_, Pool> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn try_run(&self, req: &ExecRequest, channel: Option<OwnedFd>) -> Result<RunReport, RunError> {
        if req.argv.is_empty() {
            return Err("the execution's argv is empty".into());
        }
        for (p, _) in &req.files {
            file_path(p)?;
        }
        let mut slot = self.acquire()?;
        let result = self.ensure_zygote(&mut slot).map_err(ExecFailure::broken);
        let result = result.and_then(|()| {
            if self.spec.in_place {
                self.exec_in_place(&mut slot, req, channel)
            } else {
                self.exec(&mut slot, req, channel)
            }
        });
        let result = match result {
            Ok(report) => Ok(report),
            Err(f) => {
                if f.zygote_broken {
                    tracing::warn!(slot = slot.index, error = %f.message, "replacing a zygote");
                    self.retire_zygote(&mut slot);
                }
                f.report.map(|r| *r).ok_or(f.message)
            }
        };
        self.release(slot);
        result
    }

    /// Takes a free slot, making one if there are fewer than `slots`, else waiting.
    fn acquire(&self) -> Result<Slot, RunError> {
        let mut pool = self.lock_pool();
        loop {
            if let Some(slot) = pool.idle.pop() {
                return Ok(slot);
            }
            if pool.created < self.spec.slots {
                let index = pool.created;
                pool.created += 1;
                drop(pool);
                return self.new_slot(index).inspect_err(|_| {
                    self.lock_pool().created -= 1;
                    self.freed.notify_one();
                });
            }
            pool = self.freed.wait(pool).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn release(&self, slot: Slot) {
        self.lock_pool().idle.push(slot);
        self.freed.notify_one();
    }

    fn new_slot(&self, index: usize) -> Result<Slot, RunError> {
        let name = format!("run-{}-x{}-{index}", super::cgroup::owner(), self.id);
        let exec_cgroup = ExecCgroup::create(self.sandbox.cgroup_host(), &name)
            .map_err(io_err("creating the exec cgroup"))?
            .ok_or("no cgroup hierarchy")?;
        Ok(Slot {
            index,
            exec_cgroup,
            zygote: None,
            execs: 0,
        })
    }

    /// Starts the slot's zygote if it has none, or a new one if it died while idle (so
    /// that the next execution does not pay for it).
    fn ensure_zygote(&self, slot: &mut Slot) -> Result<(), RunError> {
        if slot.zygote.as_ref().is_some_and(|z| !z.idle_and_alive()) {
            tracing::warn!(slot = slot.index, "a zygote died while idle; replacing it");
            self.retire_zygote(slot);
        }
        if slot.zygote.is_none() {
            slot.zygote = Some(self.spawn_zygote(&slot.exec_cgroup)?);
        }
        Ok(())
    }

    /// Kills the slot's zygote (its namespace goes with it) and makes sure nothing of
    /// its last execution is left in the exec cgroup.
    fn retire_zygote(&self, slot: &mut Slot) {
        if let Some(z) = slot.zygote.take() {
            drain_zygote_output(&z, true);
            drop(z);
        }
        if let Err(e) = empty_cgroup(&slot.exec_cgroup) {
            tracing::warn!(slot = slot.index, error = %e, "exec cgroup not empty after a zygote died");
        }
    }

    fn spawn_zygote(&self, cg: &ExecCgroup) -> Result<Zygote, RunError> {
        let (mut z, started) = self.start_zygote(cg)?;
        await_ready(&mut z, started)?;
        Ok(z)
    }

    /// Launches a zygote's sandbox and sends it its init message; it is ready once
    /// [`await_ready`] says so.
    fn start_zygote(&self, cg: &ExecCgroup) -> Result<(Zygote, Instant), RunError> {
        let procs = cg
            .procs_files()
            .map_err(io_err("opening the exec cgroup's cgroup.procs"))?;
        let (sock, zygote_end) = seqpacket_pair()?;
        set_passcred(&sock)?;
        let spec = crate::RunSpec {
            argv: self.spec.argv.clone(),
            env: self.spec.env.clone(),
            mounts: self.spec.mounts.clone(),
            files: self.spec.files.clone(),
            stdin: Vec::new(),
            limits: Limits {
                cpu_time_ms: u64::MAX,
                wall_time_ms: u64::MAX,
                memory_bytes: self.spec.memory_bytes,
                output_bytes: 1 << 16,
                file_size_bytes: u64::MAX,
                processes: ZYGOTE_PROCESSES,
                open_files: u32::MAX,
                work_dir_bytes: ZYGOTE_WORK_BYTES,
            },
        };
        let spawner = self
            .spawner
            .as_ref()
            .ok_or("the fork server is shutting down")?;
        let launched = spawner.launch(spec, zygote_end)?;
        let z = Zygote {
            launched,
            sock,
            pid: 0,
        };
        let started = Instant::now();
        let fds: Vec<RawFd> = procs.iter().map(|f| f.as_raw_fd()).collect();
        send_with_fds(&z.sock, &self.init_message, &fds).map_err(io_err("sending init"))?;
        Ok((z, started))
    }

    /// One execution on a slot whose zygote is running.
    fn exec(
        &self,
        slot: &mut Slot,
        req: &ExecRequest,
        channel: Option<OwnedFd>,
    ) -> Result<RunReport, ExecFailure> {
        let limits = req.limits;
        let cg = &mut slot.exec_cgroup;
        if let Err(e) = cg.set_limits(limits.memory_bytes, u64::from(limits.processes.max(1))) {
            // Probably memory still charged above the new limit: drop it and retry.
            cg.reclaim();
            cg.set_limits(limits.memory_bytes, u64::from(limits.processes.max(1)))
                .map_err(|_| ExecFailure::soft(format!("setting exec cgroup limits: {e}")))?;
        }
        cg.begin()
            .map_err(|e| ExecFailure::soft(format!("resetting the exec cgroup: {e}")))?;
        let cg = &slot.exec_cgroup;
        slot.execs += 1;
        let id = slot.execs;
        let Some(z) = slot.zygote.as_ref() else {
            return Err(ExecFailure::broken("no zygote"));
        };

        let rl: Vec<Rlimit> = rlimits(&limits, true, cg.measures_cpu());
        let msg = serde_json::json!({
            "op": "exec",
            "id": id,
            "argv": req.argv,
            "files": req.files.iter().map(|(p, d)| (p, d.len())).collect::<Vec<_>>(),
            "prepare": req.prepare,
            "rlimits": rl.iter().map(|&(r, s, h)| (r, s, h)).collect::<Vec<_>>(),
            "work_bytes": limits.work_dir_bytes.max(4096),
        });
        let (mut out, mut err, sent) = send_exec(z, &msg, req, channel)?;
        let watch = Watch {
            zygote: z,
            cgroup: cg,
            id,
            deadline: sent + Duration::from_millis(limits.wall_time_ms),
            cpu_limit_ns: limits.cpu_time_ms.saturating_mul(1_000_000),
        };
        let (kill, end) = watch.run(&mut out, &mut err);
        let exited = Instant::now();
        // The zygote gone or silent is the end of everything it forked (the slot is
        // given a new one); otherwise what the execution started is killed now that it
        // has ended, as a fresh run's init does, and the exec cgroup must be empty
        // before the next one.
        let end = end.map_err(ExecFailure::broken)?;
        empty_cgroup(cg).map_err(ExecFailure::broken)?;
        out.pump(usize::MAX);
        err.pump(usize::MAX);
        let kill = super::overflow_kill(kill, &out, &err);
        drain_zygote_output(z, false);

        match end {
            End::Refused(msg) => Err(ExecFailure::soft(msg)),
            End::Exited {
                child_error: Some(msg),
                ..
            } => Err(ExecFailure::soft(format!("sandbox setup failed {msg}"))),
            End::Exited { exit, .. } => {
                let stats = cg.stats();
                let rusage_ms = exit.utime_us.saturating_add(exit.stime_us) / 1000;
                let cpu_ms = cg.cpu_ns().map_or(rusage_ms, |ns| ns / 1_000_000);
                let memory_kb = stats.peak_bytes.map_or(exit.maxrss_kb, |p| p / 1024);
                if cg.usage_bytes().is_some_and(|u| u > RECLAIM_ABOVE) {
                    cg.reclaim();
                }
                let facts = Facts {
                    kill,
                    program_status: exit.status,
                    init_status: 0,
                    cpu_ms,
                    limits,
                    cgroup: true,
                    oom_kills: stats.oom_kills,
                    peak_bytes: stats.peak_bytes,
                };
                Ok(super::report_from(
                    &facts,
                    out,
                    err,
                    exited.duration_since(sent).as_millis() as u64,
                    memory_kb,
                ))
            }
        }
    }
}

impl ForkServer {
    /// One execution in the slot's zygote itself (see [`ZygoteSpec::in_place`]).
    fn exec_in_place(
        &self,
        slot: &mut Slot,
        req: &ExecRequest,
        channel: Option<OwnedFd>,
    ) -> Result<RunReport, ExecFailure> {
        let limits = req.limits;
        slot.execs += 1;
        let id = slot.execs;
        let Some(z) = slot.zygote.as_ref() else {
            return Err(ExecFailure::broken("no zygote"));
        };
        let msg = serde_json::json!({
            "op": "exec",
            "id": id,
            "argv": req.argv,
            "files": req.files.iter().map(|(p, d)| (p, d.len())).collect::<Vec<_>>(),
            "prepare": req.prepare,
        });
        let (mut out, mut err, sent) = send_exec(z, &msg, req, channel)?;
        let deadline = sent + Duration::from_millis(limits.wall_time_ms);
        // Either the zygote's exit report, or why it had to go (and what the execution
        // is then reported as).
        let mut kill = None;
        let exit: Option<Message> = loop {
            let now = Instant::now();
            if now >= deadline {
                kill = Some(KillReason::Wall);
                break None;
            }
            let mut fds = [
                pollfd(z.sock.as_raw_fd()),
                pollfd(z.launched.child.pidfd.as_raw_fd()),
                pollfd(if out.open { out.file.as_raw_fd() } else { -1 }),
                pollfd(if err.open { err.file.as_raw_fd() } else { -1 }),
            ];
            let ms = deadline
                .saturating_duration_since(now)
                .as_micros()
                .div_ceil(1000)
                .min(i32::MAX as u128) as i32;
            // SAFETY: fds is a valid array of pollfd for the call's duration.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            let mut over = None;
            for (c, is_stdout, i) in [(&mut out, true, 2), (&mut err, false, 3)] {
                if c.open && fds[i].revents != 0 && c.pump(1 << 20) {
                    over = Some(KillReason::Output { stdout: is_stdout });
                }
            }
            if over.is_some() {
                kill = over;
                break None;
            }
            if fds[0].revents != 0 {
                match recv_message(&z.sock) {
                    Ok(Some((m, _))) if m.id == Some(id) && m.op == "exit" => break Some(m),
                    Ok(Some((m, _))) => {
                        return Err(ExecFailure::broken(format!(
                            "unexpected {:?} from an in-place zygote",
                            m.op
                        )))
                    }
                    Ok(None) => {}
                    Err(_) => break None, // the zygote died mid-execution
                }
            } else if fds[1].revents != 0 {
                break None;
            }
        };
        let exited = Instant::now();
        out.pump(usize::MAX);
        err.pump(usize::MAX);
        let (status, cpu_ms, memory_kb) = match &exit {
            Some(m) => (
                m.status,
                m.utime_us.saturating_add(m.stime_us) / 1000,
                m.maxrss_kb,
            ),
            // Killed, or dead by its own doing (a crash, the OOM killer).
            None => (Some(libc::SIGKILL), 0, 0),
        };
        let facts = Facts {
            kill,
            program_status: status,
            init_status: 0,
            cpu_ms,
            limits,
            cgroup: false,
            oom_kills: 0,
            peak_bytes: None,
        };
        let report = super::report_from(
            &facts,
            out,
            err,
            exited.duration_since(sent).as_millis() as u64,
            memory_kb,
        );
        if exit.is_some() {
            drain_zygote_output(z, false);
            return Ok(report);
        }
        Err(ExecFailure {
            message: "an in-place execution ended its zygote".into(),
            zygote_broken: true,
            report: Some(Box::new(report)),
        })
    }
}

/// Sends an execution's request `msg` to `z` with its descriptors: stdin (`channel`, or
/// a memfd of `req.stdin`), the stdout and stderr pipes' write ends, and a memfd of the
/// files. Returns the captures of the pipes' read ends and when the request went out.
fn send_exec(
    z: &Zygote,
    msg: &serde_json::Value,
    req: &ExecRequest,
    channel: Option<OwnedFd>,
) -> Result<(Capture, Capture, Instant), ExecFailure> {
    let payload = payload_memfd(&req.files)?;
    let stdin = match channel {
        Some(c) => c,
        None => stdin_memfd(&req.stdin)?,
    };
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    for r in [&out_r, &err_r] {
        set_nonblocking(r)?;
        // SAFETY: fcntl on a pipe we own; a refusal (over the user's pipe quota) only
        // leaves the default size.
        unsafe { libc::fcntl(r.as_raw_fd(), libc::F_SETPIPE_SZ, PIPE_BYTES) };
    }
    let fds = [
        stdin.as_raw_fd(),
        out_w.as_raw_fd(),
        err_w.as_raw_fd(),
        payload.as_raw_fd(),
    ];
    let sent = Instant::now();
    send_with_fds(&z.sock, msg.to_string().as_bytes(), &fds)
        .map_err(|e| ExecFailure::broken(format!("sending the request to the zygote: {e}")))?;
    // The zygote has its copies; ours must go so that EOFs arrive.
    drop((stdin, out_w, err_w, payload));
    let limit = req.limits.output_bytes;
    Ok((Capture::new(out_r, limit), Capture::new(err_r, limit), sent))
}

impl Drop for ForkServer {
    fn drop(&mut self) {
        let slots = std::mem::take(&mut self.lock_pool().idle);
        for mut slot in slots {
            self.retire_zygote(&mut slot);
        }
        // Last, so the zygotes' inits (whose parent-death signal is tied to the
        // spawner thread) are already gone.
        drop(self.spawner.take());
    }
}

/// How an execution ended, as the zygote reported it.
enum End {
    /// The child was reaped; `child_error` is its own report of a set-up failure.
    Exited {
        exit: Message,
        child_error: Option<String>,
    },
    /// The zygote could not start the child (it said why).
    Refused(String),
}

/// Everything the host watches during one execution.
struct Watch<'a> {
    zygote: &'a Zygote,
    cgroup: &'a ExecCgroup,
    id: u64,
    deadline: Instant,
    cpu_limit_ns: u64,
}

impl Watch<'_> {
    /// Waits for the zygote to report the child's end while collecting output, killing
    /// the execution's processes at the wall deadline, when the cgroup's CPU time passes
    /// the limit, or when output passes the cap. Output is read every [`LAZY_DRAIN`]
    /// until one drain finds [`EAGER_ABOVE`] bytes, then whenever there is some.
    /// Returns why we killed it, if we did, and the end, or why the zygote can no
    /// longer be trusted.
    fn run(
        &self,
        out: &mut Capture,
        err: &mut Capture,
    ) -> (Option<KillReason>, Result<End, String>) {
        let mut kill: Option<KillReason> = None;
        let mut killed_at: Option<Instant> = None;
        let mut child_error = None;
        let watch_cpu = self.cgroup.measures_cpu();
        let mut next_cpu_check = Instant::now() + CPU_CHECK_INTERVAL;
        let mut eager = false;
        let mut next_drain = Instant::now() + LAZY_DRAIN;
        let stop = |reason: KillReason, kill: &mut Option<KillReason>, at: &mut Option<Instant>| {
            if kill.is_none() {
                self.cgroup.kill_all();
                *kill = Some(reason);
                *at = Some(Instant::now());
            }
        };
        loop {
            let now = Instant::now();
            if now >= self.deadline {
                stop(KillReason::Wall, &mut kill, &mut killed_at);
            }
            if let Some(t) = killed_at {
                if now >= t + KILL_GRACE {
                    return (kill, Err("the zygote did not report a killed child".into()));
                }
                // Again, for a child that joined the cgroup after the first kill.
                self.cgroup.kill_all();
            }
            let mut wait = match killed_at {
                Some(_) => Duration::from_millis(20),
                None => self.deadline.saturating_duration_since(now),
            };
            if watch_cpu && kill.is_none() {
                wait = wait.min(next_cpu_check.saturating_duration_since(now));
            }
            // Once killed, read as it comes: the end is near and nothing competes.
            let lazy = !eager && kill.is_none();
            if lazy {
                wait = wait.min(next_drain.saturating_duration_since(now));
            }
            let watched = |c: &Capture| {
                if c.open && !lazy {
                    c.file.as_raw_fd()
                } else {
                    -1
                }
            };
            let mut fds = [
                pollfd(self.zygote.sock.as_raw_fd()),
                pollfd(self.zygote.launched.child.pidfd.as_raw_fd()),
                pollfd(watched(out)),
                pollfd(watched(err)),
            ];
            let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
            // SAFETY: fds is a valid array of pollfd for the call's duration; negative
            // descriptors are ignored by poll.
            let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
            if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                tracing::warn!(error = %io::Error::last_os_error(), "poll failed");
                std::thread::sleep(Duration::from_millis(10));
            }
            let drain_now = lazy && Instant::now() >= next_drain;
            if drain_now {
                next_drain = Instant::now() + LAZY_DRAIN;
            }
            let seen = out.seen + err.seen;
            for (c, is_stdout, i) in [(&mut *out, true, 2), (&mut *err, false, 3)] {
                if c.open && (drain_now || fds[i].revents != 0) && c.pump(1 << 20) {
                    stop(
                        KillReason::Output { stdout: is_stdout },
                        &mut kill,
                        &mut killed_at,
                    );
                }
            }
            if drain_now && out.seen + err.seen - seen >= EAGER_ABOVE {
                eager = true;
            }
            if fds[0].revents != 0 {
                loop {
                    match recv_message(&self.zygote.sock) {
                        Ok(Some((m, _))) if m.id != Some(self.id) => {
                            return (
                                kill,
                                Err(format!("message {:?} for another execution", m.op)),
                            );
                        }
                        Ok(Some((m, _))) => match m.op.as_str() {
                            "exit" => {
                                return (
                                    kill,
                                    Ok(End::Exited {
                                        exit: m,
                                        child_error,
                                    }),
                                )
                            }
                            "child_error" => child_error = m.message,
                            "error" => {
                                return (
                                    kill,
                                    Ok(End::Refused(format!(
                                        "the zygote could not start the execution: {}",
                                        m.message.unwrap_or_default()
                                    ))),
                                )
                            }
                            other => {
                                return (kill, Err(format!("unexpected {other:?} from the zygote")))
                            }
                        },
                        Ok(None) => break,
                        Err(e) => return (kill, Err(e)),
                    }
                }
            }
            if fds[1].revents != 0 {
                return (kill, Err("the zygote's sandbox ended".into()));
            }
            if watch_cpu && kill.is_none() && Instant::now() >= next_cpu_check {
                next_cpu_check = Instant::now() + CPU_CHECK_INTERVAL;
                if self
                    .cgroup
                    .cpu_ns()
                    .is_some_and(|ns| ns > self.cpu_limit_ns)
                {
                    stop(KillReason::Cpu, &mut kill, &mut killed_at);
                }
            }
        }
    }
}

fn pollfd(fd: RawFd) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

/// Kills whatever is left in an exec cgroup and waits until every process in it has
/// exited and been reaped.
fn empty_cgroup(cg: &ExecCgroup) -> Result<(), String> {
    let until = Instant::now() + DRAIN_TIMEOUT;
    loop {
        match cg.pids_current() {
            Some(0) => return Ok(()),
            None => return Err("cannot read the exec cgroup's pids".into()),
            Some(_) => {}
        }
        if Instant::now() >= until {
            return Err("processes of an execution would not die".into());
        }
        cg.kill_all();
        std::thread::sleep(Duration::from_micros(200));
    }
}

/// Waits for a started zygote to say it is ready.
fn await_ready(z: &mut Zygote, started: Instant) -> Result<(), RunError> {
    let ready = match wait_message(z, started + READY_TIMEOUT) {
        Ok((m, pid)) if m.op == "ready" => {
            z.pid = pid;
            m
        }
        Ok((m, _)) => return Err(format!("zygote said {:?} before ready", m.op)),
        Err(e) => return Err(zygote_failure(z, &e)),
    };
    if !ready.missing.is_empty() {
        tracing::warn!(missing = ?ready.missing, "zygote could not preload some modules");
    }
    tracing::debug!(
        pid = z.pid,
        ms = started.elapsed().as_millis() as u64,
        "zygote ready"
    );
    Ok(())
}

/// Logs what a zygote wrote on its own stdout/stderr (it should write nothing), so the
/// pipes never fill. With `all`, reads until EOF (the zygote is dying).
fn drain_zygote_output(z: &Zygote, all: bool) {
    for (fd, name) in [(&z.launched.out, "stdout"), (&z.launched.err, "stderr")] {
        let mut buf = [0u8; 4096];
        let mut text = Vec::new();
        loop {
            // SAFETY: reading into a stack buffer from a descriptor we own.
            let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if n <= 0 {
                break; // EOF, or nothing more for now (the pipe is non-blocking)
            }
            if text.len() < 16 << 10 {
                text.extend_from_slice(&buf[..n as usize]);
            } else if !all {
                break;
            }
        }
        if !text.is_empty() {
            tracing::warn!(
                zygote = z.pid,
                stream = name,
                output = %String::from_utf8_lossy(&text).trim_end(),
                "zygote output"
            );
        }
    }
}

/// Why a zygote failed to start: its init's setup error if it reported one, else what
/// it printed, else `e`.
fn zygote_failure(z: &mut Zygote, e: &str) -> String {
    z.launched.child.kill();
    let _ = z.launched.child.reap();
    let records = read_records(&mut z.launched.report_r);
    if let Some(msg) = setup_error(&records, &z.launched.plan, "the zygote") {
        return msg;
    }
    let mut text = Vec::new();
    for fd in [&z.launched.err, &z.launched.out] {
        if let Ok(f) = fd.try_clone() {
            let _ = File::from(f).read_to_end(&mut text);
        }
    }
    let tail: String = String::from_utf8_lossy(&text)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .trim()
        .to_string();
    if tail.is_empty() {
        format!("zygote failed to start: {e}")
    } else {
        format!("zygote failed to start: {e}: {tail}")
    }
}

/// Waits for the next message until `deadline`; an error when the zygote's socket
/// closes, its sandbox ends, or the time runs out.
fn wait_message(z: &Zygote, deadline: Instant) -> Result<(Message, i32), String> {
    loop {
        if let Some(m) = recv_message(&z.sock)? {
            return Ok(m);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err("timed out".into());
        }
        let mut fds = [
            pollfd(z.sock.as_raw_fd()),
            pollfd(z.launched.child.pidfd.as_raw_fd()),
        ];
        let ms = deadline
            .saturating_duration_since(now)
            .as_micros()
            .div_ceil(1000)
            .min(i32::MAX as u128) as i32;
        // SAFETY: fds is a valid array of pollfd for the call's duration.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if fds[1].revents != 0 && fds[0].revents == 0 {
            return Err("the zygote's sandbox ended".into());
        }
    }
}

/// Receives one message without blocking: Ok(None) when there is none yet, an error on
/// EOF (the zygote and every child holding the socket are gone) or garbage. The pid is
/// the sender's, as the kernel attached it, in our pid namespace.
fn recv_message(sock: &OwnedFd) -> Result<Option<(Message, i32)>, String> {
    let mut buf = [0u8; 16 << 10];
    match recv_with_creds(sock, &mut buf) {
        Ok(Some((0, _))) => Err("the zygote closed its socket".into()),
        Ok(Some((n, pid))) => {
            let m: Message = serde_json::from_slice(&buf[..n])
                .map_err(|e| format!("bad message from the zygote: {e}"))?;
            Ok(Some((m, pid)))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(format!("reading from the zygote: {e}")),
    }
}

/// The files of a request back to back in a memfd, which the child copies from with
/// sendfile.
fn payload_memfd(files: &[(String, Vec<u8>)]) -> Result<OwnedFd, RunError> {
    // SAFETY: memfd_create with a valid name; the fd is owned right away.
    let fd = unsafe { libc::memfd_create(c"crucible-files".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let mut f = unsafe { File::from_raw_fd(fd) };
    for (_, data) in files {
        f.write_all(data).map_err(io_err("writing files"))?;
    }
    f.rewind().map_err(io_err("rewinding files"))?;
    Ok(OwnedFd::from(f))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// A connected SOCK_SEQPACKET pair (message boundaries kept, close-on-exec).
fn seqpacket_pair() -> Result<(OwnedFd, OwnedFd), RunError> {
    let mut fds = [0; 2];
    // SAFETY: socketpair fills two descriptors we then own.
    let r = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if r != 0 {
        return Err(format!("socketpair: {}", io::Error::last_os_error()));
    }
    // SAFETY: both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// SO_PASSCRED: every message received carries its sender's pid.
fn set_passcred(sock: &OwnedFd) -> Result<(), RunError> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt with a valid int option value.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PASSCRED,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(format!("SO_PASSCRED: {}", io::Error::last_os_error()));
    }
    Ok(())
}

/// Sends one message with `fds` attached (SCM_RIGHTS).
fn send_with_fds(sock: &OwnedFd, data: &[u8], fds: &[RawFd]) -> io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    let fd_bytes = std::mem::size_of_val(fds);
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as u32) } as usize;
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; the fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = space;
        // SAFETY: the control buffer holds CMSG_SPACE(fd_bytes) bytes, so the first
        // header and its data fit.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(fd_bytes as u32) as usize;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr() as *const u8,
                libc::CMSG_DATA(cmsg),
                fd_bytes,
            );
        }
    }
    loop {
        // SAFETY: msg points at valid buffers for the call's duration.
        let r = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if r >= 0 {
            return if r as usize == data.len() {
                Ok(())
            } else {
                Err(io::Error::other("short send"))
            };
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one message without blocking, with its sender's pid (SO_PASSCRED must be
/// set). Ok(None) when nothing is waiting. Descriptors sent along (none are expected)
/// are closed.
fn recv_with_creds(sock: &OwnedFd, buf: &mut [u8]) -> io::Result<Option<(usize, i32)>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr() as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // Room for the credentials and a few stray descriptors.
    // SAFETY: CMSG_SPACE is arithmetic.
    let space = unsafe {
        libc::CMSG_SPACE(std::mem::size_of::<libc::ucred>() as u32)
            + libc::CMSG_SPACE(8 * std::mem::size_of::<RawFd>() as u32)
    } as usize;
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: msghdr is plain data; the fields set below point at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    msg.msg_controllen = space;
    let n = loop {
        // SAFETY: msg points at valid buffers for the call's duration.
        let r = unsafe {
            libc::recvmsg(
                sock.as_raw_fd(),
                &mut msg,
                libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC,
            )
        };
        if r >= 0 {
            break r as usize;
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(None),
            _ => return Err(e),
        }
    };
    let mut pid = 0;
    // SAFETY: walking the control messages the kernel wrote, within msg_controllen.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg);
            let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
            if (*cmsg).cmsg_level == libc::SOL_SOCKET {
                if (*cmsg).cmsg_type == libc::SCM_CREDENTIALS
                    && len >= std::mem::size_of::<libc::ucred>()
                {
                    let cred: libc::ucred = std::ptr::read_unaligned(data as *const libc::ucred);
                    pid = cred.pid;
                } else if (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                    for i in 0..len / std::mem::size_of::<RawFd>() {
                        let fd: RawFd = std::ptr::read_unaligned((data as *const RawFd).add(i));
                        drop(OwnedFd::from_raw_fd(fd));
                    }
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok(Some((n, pid)))
}

/// The thread that clones every zygote's sandbox. A sandbox's init dies with the thread
/// that cloned it (so that nothing outlives a crashed parent), so zygotes must come
/// from a thread that lives as long as the fork server, not from a caller's thread
/// (tokio's blocking threads come and go).
struct Spawner {
    jobs: Option<mpsc::Sender<SpawnJob>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct SpawnJob {
    spec: crate::RunSpec,
    /// The zygote's end of its socket, which becomes its fd 3.
    socket: OwnedFd,
    reply: mpsc::Sender<Result<Launched, RunError>>,
}

impl Spawner {
    fn start(sandbox: ProcessSandbox) -> Spawner {
        let (tx, rx) = mpsc::channel::<SpawnJob>();
        let zygote_filter = seccomp::build(seccomp::Policy::Zygote);
        let thread = std::thread::Builder::new()
            .name("crucible-zygotes".into())
            .spawn(move || {
                for job in rx {
                    let fds = [job.socket.as_raw_fd()];
                    let opts = LaunchOptions {
                        extra_fds: &fds,
                        keep_caps: Some(ZYGOTE_CAPS),
                        seccomp: &zygote_filter,
                        rlimits: Some(zygote_rlimits()),
                        stdin: None,
                    };
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        sandbox.launch(&job.spec, &opts)
                    }))
                    .unwrap_or_else(|_| Err("internal error: launching a zygote panicked".into()));
                    drop(job.socket);
                    // A caller that gave up drops the reply, and with it the zygote.
                    let _ = job.reply.send(r);
                }
            });
        match thread {
            Ok(t) => Spawner {
                jobs: Some(tx),
                thread: Some(t),
            },
            Err(e) => {
                tracing::error!(error = %e, "cannot start the zygote spawner thread");
                Spawner {
                    jobs: None,
                    thread: None,
                }
            }
        }
    }

    fn launch(&self, spec: crate::RunSpec, socket: OwnedFd) -> Result<Launched, RunError> {
        let (reply, rx) = mpsc::channel();
        self.jobs
            .as_ref()
            .ok_or("no spawner thread")?
            .send(SpawnJob {
                spec,
                socket,
                reply,
            })
            .map_err(|_| "the spawner thread is gone".to_string())?;
        rx.recv()
            .map_err(|_| "the spawner thread is gone".to_string())?
    }
}

impl Drop for Spawner {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A zygote's rlimits: as high as we may set them (a child can lower limits but never
/// raise them past its zygote's), with no core dumps.
fn zygote_rlimits() -> Vec<Rlimit> {
    [
        libc::RLIMIT_CPU,
        libc::RLIMIT_AS,
        libc::RLIMIT_FSIZE,
        libc::RLIMIT_NOFILE,
        libc::RLIMIT_NPROC,
    ]
    .into_iter()
    .map(|res| {
        let max = hard_limit(res);
        (res as libc::c_int, max, max)
    })
    .chain(std::iter::once((libc::RLIMIT_CORE as libc::c_int, 0, 0)))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_server_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ForkServer>();
    }

    #[test]
    fn hex_is_lowercase_pairs() {
        assert_eq!(hex(&[0, 15, 255]), "000fff");
    }

    #[test]
    fn messages_round_trip_with_descriptors_and_credentials() {
        let (a, b) = seqpacket_pair().unwrap();
        set_passcred(&b).unwrap();
        let (r, w) = pipe().unwrap();
        send_with_fds(&a, br#"{"op":"ready"}"#, &[r.as_raw_fd()]).unwrap();
        let (m, pid) = recv_message(&b).unwrap().unwrap();
        assert_eq!(m.op, "ready");
        assert_eq!(pid, std::process::id() as i32);
        assert!(recv_message(&b).unwrap().is_none(), "nothing more waiting");
        drop((a, w));
        assert!(recv_message(&b).is_err(), "EOF once the peer is gone");
    }

    #[test]
    fn payload_is_the_files_back_to_back() {
        let fd =
            payload_memfd(&[("a".into(), b"xy".to_vec()), ("b".into(), b"z".to_vec())]).unwrap();
        let mut s = String::new();
        File::from(fd).read_to_string(&mut s).unwrap();
        assert_eq!(s, "xyz");
    }
}
