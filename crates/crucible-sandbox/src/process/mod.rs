//! The native process sandbox: namespaces, a pivot_root'ed read-only root, rlimits,
//! cgroups, no_new_privs and seccomp, with the whole process tree killed and reaped at
//! the limit.
//!
//! One run: the parent (any thread of a multithreaded process) prepares everything,
//! clones a child into fresh user/pid/net/mount/ipc/uts/cgroup namespaces, writes its
//! uid/gid maps and joins it to the run's cgroup, then lets it go. The child is pid 1 of
//! its namespace (a mini init): it builds the root, forks the program as pid 2 and reaps
//! until the program exits, then kills and reaps whatever is left and reports the
//! program's wait status. To end a run early the parent sends the init SIGTERM through
//! its pidfd (the init does the same kill-and-reap, so CPU time is fully accounted), and
//! SIGKILLs it after a grace period; an init's death takes its namespace with it.

mod cgroup;
mod child;
mod forkserver;
mod mounts;
mod outcome;
mod seccomp;
mod sys;

pub use cgroup::CgroupMode;
pub use forkserver::{ExecRequest, ForkServer, ZygoteSpec, PYTHON_ZYGOTE};

use cgroup::{CgroupHost, RunCgroup};
use child::{ChildOp, ChildPlan, Record, Rlimit, Stage, RECORD_ERROR, RECORD_EXIT};
use crucible_core::{Limits, RunReport};
use mounts::{PlanOp, RealFs};
use outcome::{Facts, KillReason};
use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!(
    "the process sandbox supports Linux on x86_64 only (its seccomp filter is x86_64-specific)"
);

/// Why a [`ProcessSandbox`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The kernel refused to create the namespaces a run needs.
    #[error("cannot create user/pid/net/mount/ipc/uts namespaces: {0}")]
    Namespaces(#[source] io::Error),
    /// The kernel has no seccomp filter support.
    #[error("seccomp filters are not available: {0}")]
    Seccomp(#[source] io::Error),
    /// The scratch directory is missing or not a directory.
    #[error("scratch directory {path:?} is not usable: {source}")]
    ScratchDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The cgroup parent name is empty, absolute or climbs with `..`.
    #[error("invalid cgroup parent name {0:?}")]
    CgroupParent(String),
    /// A fork server cannot run here (no root, no cgroups) or its first zygote failed.
    #[error("fork server unavailable: {0}")]
    ForkServer(String),
}

/// Settings for a [`ProcessSandbox`].
#[derive(Clone, Debug, Default)]
pub struct SandboxConfig {
    /// Where per-run scratch dirs (the new-root mount point) are made; default
    /// `std::env::temp_dir()`. Each run's dir is empty on the host and removed after.
    pub scratch_dir: Option<PathBuf>,
    /// Name of the parent cgroup to create runs under (default `"crucible"`).
    pub cgroup_parent: Option<String>,
}

/// One program to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The command; `argv[0]` is an absolute path as seen inside the sandbox.
    pub argv: Vec<String>,
    /// The whole environment; nothing else is inherited.
    pub env: Vec<(String, String)>,
    /// Files written into the work dir (/work) before the program starts, by relative
    /// path, owned by the program's user. Like everything in /work they live in memory
    /// and count toward `limits.work_dir_bytes` and the memory cgroup.
    pub files: Vec<(String, Vec<u8>)>,
    /// Everything the program reads on stdin.
    pub stdin: Vec<u8>,
    /// The limits of the run (see [`Limits`] for each one's meaning).
    pub limits: Limits,
    /// Host paths bind-mounted read-only at the same path (directories or files).
    /// Symlinks on the way (such as `/bin -> usr/bin`) are recreated as symlinks and
    /// their targets mounted; paths missing on the host are skipped.
    pub mounts: Vec<PathBuf>,
}

/// How ids inside the namespace map to the host.
#[derive(Debug, Clone, Copy)]
enum Ids {
    /// We are root: the init is root inside, mapped to an unprivileged host id, and the
    /// program is uid/gid 1000 inside, mapped to a host id of its own for each run, so
    /// RLIMIT_NPROC (and other per-user counts) cover only that run's processes. The
    /// slot mixes in our pid so that sandboxes in different processes rarely meet.
    Root { base: u32, pid: u32 },
    /// Not root: only our own ids can be mapped, to 0 inside; the program stays uid 0
    /// inside with no capabilities and locked securebits.
    Unprivileged { uid: u32, gid: u32 },
}

/// The id maps and the program's identity for one run.
struct RunIds {
    uid_map: String,
    gid_map: String,
    /// The program's uid and gid inside the namespace.
    program_uid: u32,
    program_gid: u32,
    /// Whether the init may (and so must) drop supplementary groups.
    clear_groups: bool,
    /// Whether the program, staying uid 0, must lock its securebits.
    lock_securebits: bool,
}

/// First host id used for runs when we are root; each run takes two.
const ROOT_ID_BASE: u32 = 1_700_000_000;
const ROOT_ID_SLOTS: u64 = 1 << 24;
/// The program's uid and gid inside the namespace (root mode).
const PROGRAM_ID: u32 = 1000;
const HOSTNAME: &str = "crucible";
/// Devices bound into /dev.
const DEVICES: &[&str] = &["null", "zero", "random", "urandom"];
/// How often the parent compares the cgroup's CPU time with the limit.
const CPU_CHECK_INTERVAL: Duration = Duration::from_millis(50);
/// RLIMIT_AS headroom over the cgroup limit: virtual reservations (thread stacks,
/// malloc arenas) are not real usage, and the cgroup enforces the real limit.
const AS_HEADROOM: u64 = 1 << 30;
/// How long the init gets to kill and reap everything when asked to stop, before the
/// parent SIGKILLs it (and the kernel tears the namespace down).
const STOP_GRACE: Duration = Duration::from_secs(1);

/// A native process sandbox. Cheap to share: `run` may be called from many threads.
#[derive(Debug, Clone)]
pub struct ProcessSandbox {
    scratch_dir: PathBuf,
    cgroups: CgroupHost,
    ids: Ids,
    seccomp: Vec<libc::sock_filter>,
}

/// Numbers runs across every sandbox in this process, so run cgroups, scratch dirs and
/// per-run host ids never collide even when sandboxes share a cgroup parent.
static RUN_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A per-run scratch directory on the host; removed when dropped.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(base: &Path, name: &str) -> io::Result<ScratchDir> {
        let mut attempt = 0u32;
        loop {
            let p = if attempt == 0 {
                base.join(name)
            } else {
                base.join(format!("{name}-{attempt}"))
            };
            match std::fs::DirBuilder::new().mode(0o700).create(&p) {
                Ok(()) => return Ok(ScratchDir(p)),
                // A leftover of a crashed process with our pid: pick another name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("creating {}: {e}", p.display()),
                    ))
                }
            }
        }
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "could not remove scratch dir");
        }
    }
}

/// The cloned init; killed and reaped when dropped unless already reaped.
pub(crate) struct ChildGuard {
    pub(crate) pid: libc::pid_t,
    pub(crate) pidfd: OwnedFd,
    reaped: bool,
}

impl ChildGuard {
    /// Asks the init to stop the run: it kills and reaps every process in the namespace
    /// and reports, so CPU time and the program's status are complete.
    pub(crate) fn terminate(&self) {
        self.signal(libc::SIGTERM);
    }

    /// Kills the init outright, and with it the namespace.
    pub(crate) fn kill(&self) {
        self.signal(libc::SIGKILL);
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: pidfd_send_signal on a pidfd we own; it cannot hit a recycled pid.
        unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.pidfd.as_raw_fd(),
                sig,
                std::ptr::null::<libc::siginfo_t>(),
                0u32,
            );
        }
    }

    /// Waits for the init to exit and returns its wait status and rusage (which covers
    /// every descendant the init reaped).
    pub(crate) fn reap(&mut self) -> io::Result<(i32, libc::rusage)> {
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: waiting for our own child.
            let r = unsafe { libc::wait4(self.pid, &mut status, 0, &mut ru) };
            if r == self.pid {
                self.reaped = true;
                return Ok((status, ru));
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                // ECHILD: someone else reaped it; nothing more we can do.
                self.reaped = true;
                return Err(e);
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if !self.reaped {
            self.kill();
            let _ = self.reap();
        }
    }
}

/// A pipe end we read the program's output from, with what was kept of it.
pub(crate) struct Capture {
    pub(crate) file: File,
    pub(crate) buf: Vec<u8>,
    cap: usize,
    pub(crate) truncated: bool,
    pub(crate) open: bool,
    /// Bytes read so far, kept or not.
    pub(crate) seen: u64,
}

impl Capture {
    pub(crate) fn new(fd: OwnedFd, cap: u64) -> Capture {
        Capture {
            file: File::from(fd),
            buf: Vec::new(),
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            truncated: false,
            open: true,
            seen: 0,
        }
    }

    /// Reads what is available (at most `budget` bytes, so a fast writer cannot starve
    /// the loop). Returns true when the output went over the cap.
    pub(crate) fn pump(&mut self, budget: usize) -> bool {
        let mut chunk = [0u8; 64 * 1024];
        let mut read = 0;
        while self.open && read < budget {
            match self.file.read(&mut chunk) {
                Ok(0) => self.open = false,
                Ok(n) => {
                    read += n;
                    self.seen += n as u64;
                    let room = self.cap.saturating_sub(self.buf.len());
                    if n > room {
                        self.truncated = true;
                    }
                    self.buf.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    tracing::debug!(error = %e, "reading program output");
                    self.open = false;
                }
            }
        }
        self.truncated
    }
}

/// Why a run was stopped, given what was found in its output pipes at the end: output
/// past the cap is an output-limit kill even when the program ended before we read it,
/// so the verdict never depends on which came first.
pub(crate) fn overflow_kill(
    kill: Option<KillReason>,
    out: &Capture,
    err: &Capture,
) -> Option<KillReason> {
    match kill {
        None if out.truncated || err.truncated => Some(KillReason::Output {
            stdout: out.truncated,
        }),
        k => k,
    }
}

/// An error before the program could run, as a message for the report.
pub(crate) type RunError = String;

pub(crate) fn io_err(context: &str) -> impl FnOnce(io::Error) -> RunError + '_ {
    move |e| format!("{context}: {e}")
}

fn cstring(s: impl Into<Vec<u8>>, what: &str) -> Result<CString, RunError> {
    CString::new(s).map_err(|_| format!("{what} contains a NUL byte"))
}

/// The path relative to the new root for an absolute inside path.
fn rel(p: &Path) -> Result<CString, RunError> {
    let s = p.as_os_str().as_bytes();
    let s = s.strip_prefix(b"/").unwrap_or(s);
    cstring(s, "mount path")
}

pub(crate) fn pipe() -> Result<(OwnedFd, OwnedFd), RunError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))
}

pub(crate) fn set_nonblocking(fd: &OwnedFd) -> Result<(), RunError> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = fcntl(fd.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| format!("fcntl: {e}"))?;
    fcntl(
        fd.as_raw_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )
    .map_err(|e| format!("fcntl: {e}"))?;
    Ok(())
}

/// A close-on-exec duplicate of `fd`.
pub(crate) fn dup_fd(fd: RawFd) -> Result<OwnedFd, RunError> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller keeps open; the new one
    // is ours alone.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    if new < 0 {
        return Err(format!("dup: {}", io::Error::last_os_error()));
    }
    // SAFETY: just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// A memfd holding `data`, positioned at the start: the program's stdin. A file rather
/// than a pipe, so a large stdin never blocks either side.
pub(crate) fn stdin_memfd(data: &[u8]) -> Result<OwnedFd, RunError> {
    // SAFETY: memfd_create with a valid name; the fd is owned right away.
    let fd = unsafe { libc::memfd_create(c"crucible-stdin".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(format!("memfd_create: {}", io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let mut f = unsafe { File::from_raw_fd(fd) };
    f.write_all(data).map_err(io_err("writing stdin"))?;
    f.rewind().map_err(io_err("rewinding stdin"))?;
    Ok(OwnedFd::from(f))
}

/// The current hard limit for `resource` (RLIM_INFINITY when unknown).
pub(crate) fn hard_limit(resource: libc::__rlimit_resource_t) -> u64 {
    let mut r = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: libc::RLIM64_INFINITY,
    };
    // SAFETY: getrlimit64 fills the struct.
    unsafe { libc::getrlimit64(resource, &mut r) };
    r.rlim_max
}

/// The program's rlimits, clamped to what we may set (hard limits can only go down).
///
/// `cgroup`: a memory cgroup enforces the memory limit, so RLIMIT_AS is only a backstop.
/// `cpu_watchdog`: the cgroup measures the tree's CPU time and the parent enforces the
/// exact limit, so RLIMIT_CPU gets one more second and is only a backstop. The kernel
/// checks RLIMIT_CPU against tick-sampled time, which on a busy machine runs 10-20%
/// ahead of the real (scheduler-measured) time; at exactly the limit it would give
/// programs just under the limit a false TLE.
pub(crate) fn rlimits(l: &Limits, cgroup: bool, cpu_watchdog: bool) -> Vec<Rlimit> {
    let cpu_soft = l.cpu_time_ms.div_ceil(1000).max(1) + u64::from(cpu_watchdog);
    let address_space = if cgroup {
        l.memory_bytes.saturating_add(AS_HEADROOM)
    } else {
        l.memory_bytes
    };
    let wanted: [(libc::__rlimit_resource_t, u64, u64); 6] = [
        (libc::RLIMIT_CPU, cpu_soft, cpu_soft + 1),
        (libc::RLIMIT_AS, address_space, address_space),
        (libc::RLIMIT_FSIZE, l.file_size_bytes, l.file_size_bytes),
        (
            libc::RLIMIT_NOFILE,
            u64::from(l.open_files),
            u64::from(l.open_files),
        ),
        (
            libc::RLIMIT_NPROC,
            u64::from(l.processes.max(1)),
            u64::from(l.processes.max(1)),
        ),
        (libc::RLIMIT_CORE, 0, 0),
    ];
    wanted
        .into_iter()
        .map(|(res, soft, hard)| {
            let max = hard_limit(res);
            (res as libc::c_int, soft.min(max), hard.min(max))
        })
        .collect()
}

/// Validates a work-dir file path: relative, no `..`, not empty.
pub(crate) fn file_path(p: &str) -> Result<PathBuf, RunError> {
    let path = PathBuf::from(p);
    if p.is_empty()
        || !path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format!("file path {p:?} must be relative, without `..`"));
    }
    Ok(path)
}

impl ProcessSandbox {
    /// Probes what the host supports, once: namespaces (a trial clone), seccomp, and
    /// cgroups (v2 with memory+pids, else v1, else none, with one warning). Returns an
    /// error when namespaces or seccomp are unavailable or the config is unusable.
    pub fn new(config: SandboxConfig) -> Result<ProcessSandbox, SandboxError> {
        let scratch_dir = config.scratch_dir.unwrap_or_else(std::env::temp_dir);
        match std::fs::metadata(&scratch_dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => {
                return Err(SandboxError::ScratchDir {
                    path: scratch_dir,
                    source: io::Error::other("not a directory"),
                })
            }
            Err(source) => {
                return Err(SandboxError::ScratchDir {
                    path: scratch_dir,
                    source,
                })
            }
        }
        let parent = config
            .cgroup_parent
            .unwrap_or_else(|| "crucible".to_string());
        let pp = Path::new(&parent);
        if parent.is_empty()
            || pp.is_absolute()
            || pp.components().any(|c| !matches!(c, Component::Normal(_)))
        {
            return Err(SandboxError::CgroupParent(parent));
        }

        // SAFETY: PR_GET_SECCOMP only reads our own state.
        if unsafe { libc::prctl(libc::PR_GET_SECCOMP) } < 0 {
            return Err(SandboxError::Seccomp(io::Error::last_os_error()));
        }
        probe_namespaces().map_err(SandboxError::Namespaces)?;

        let cgroups = CgroupHost::detect(&parent);
        // SAFETY: plain getters.
        let (euid, egid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let ids = if euid == 0 {
            Ids::Root {
                base: ROOT_ID_BASE,
                pid: std::process::id(),
            }
        } else {
            Ids::Unprivileged {
                uid: euid,
                gid: egid,
            }
        };
        tracing::debug!(mode = ?cgroups.mode(), ?ids, scratch = %scratch_dir.display(), "process sandbox ready");
        Ok(ProcessSandbox {
            scratch_dir,
            cgroups,
            ids,
            seccomp: seccomp::build_filter(),
        })
    }

    /// Which cgroup hierarchy runs are placed in.
    pub fn cgroup_mode(&self) -> CgroupMode {
        self.cgroups.mode()
    }

    /// Runs one program and blocks until it has ended and everything it left is gone.
    ///
    /// Never panics: infrastructure failures come back as a report with status
    /// `SandboxError` and a message naming the failed step.
    pub fn run(&self, spec: &RunSpec) -> RunReport {
        self.run_inner(spec, None)
    }

    /// Runs one program, like [`run`](Self::run), with `channel` (a socket, usually one
    /// end of a socketpair) as its stdin instead of `spec.stdin`: the program reads and
    /// writes it while another process holds the other end. Our copy is closed as soon
    /// as the program has its own, so the other end sees EOF when the program is gone.
    pub fn run_with_channel(&self, spec: &RunSpec, channel: OwnedFd) -> RunReport {
        self.run_inner(spec, Some(channel))
    }

    fn run_inner(&self, spec: &RunSpec, channel: Option<OwnedFd>) -> RunReport {
        let started = Instant::now();
        let r =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.try_run(spec, channel)));
        let report = match r {
            Ok(Ok(report)) => report,
            Ok(Err(msg)) => {
                tracing::warn!(error = %msg, "sandbox run failed");
                let mut r = RunReport::sandbox_error(msg);
                r.wall_ms = started.elapsed().as_millis() as u64;
                r
            }
            Err(_) => RunReport::sandbox_error("internal error: the sandbox panicked"),
        };
        tracing::debug!(
            status = ?report.status,
            cpu_ms = report.cpu_ms,
            wall_ms = report.wall_ms,
            memory_kb = report.memory_kb,
            "sandbox run finished"
        );
        report
    }

    fn ids_for_run(&self, n: u64) -> RunIds {
        match self.ids {
            Ids::Root { base, pid } => {
                let slot =
                    (u64::from(pid).wrapping_mul(65_537).wrapping_add(n) % ROOT_ID_SLOTS) as u32;
                let init = base + 2 * slot;
                let prog = init + 1;
                let map = format!("0 {init} 1\n{PROGRAM_ID} {prog} 1\n");
                RunIds {
                    uid_map: map.clone(),
                    gid_map: map,
                    program_uid: PROGRAM_ID,
                    program_gid: PROGRAM_ID,
                    clear_groups: true,
                    lock_securebits: false,
                }
            }
            Ids::Unprivileged { uid, gid } => RunIds {
                uid_map: format!("0 {uid} 1\n"),
                gid_map: format!("0 {gid} 1\n"),
                program_uid: 0,
                program_gid: 0,
                clear_groups: false,
                lock_securebits: true,
            },
        }
    }

    /// Whether runs map a separate, unprivileged id for the program (we are root), as a
    /// fork server needs so that its children cannot signal their zygote.
    pub(crate) fn has_program_ids(&self) -> bool {
        matches!(self.ids, Ids::Root { .. })
    }

    /// The cgroup host runs are placed under.
    pub(crate) fn cgroup_host(&self) -> &CgroupHost {
        &self.cgroups
    }

    /// The mount steps for the new root: the requested binds, then /work, /proc, /dev.
    fn root_ops(&self, spec: &RunSpec, work_owner: u32) -> Result<Vec<ChildOp>, RunError> {
        let (plan, missing) =
            mounts::plan_mounts(&RealFs, &spec.mounts).map_err(|e| e.to_string())?;
        if !missing.is_empty() {
            tracing::debug!(?missing, "skipping mounts missing on the host");
        }
        let mut ops = Vec::new();
        for op in plan {
            match op {
                PlanOp::Dir(p) => ops.push(ChildOp::Mkdir { path: rel(&p)? }),
                PlanOp::Bind { path, dir } => {
                    let flags = mounts::host_mount_flags(&path)
                        .map_err(|e| format!("statvfs {}: {e}", path.display()))?;
                    let target = rel(&path)?;
                    ops.push(if dir {
                        ChildOp::Mkdir {
                            path: target.clone(),
                        }
                    } else {
                        ChildOp::Touch {
                            path: target.clone(),
                        }
                    });
                    ops.push(ChildOp::Bind {
                        source: cstring(path.as_os_str().as_bytes(), "mount path")?,
                        target,
                        recursive: dir,
                        readonly_flags: Some(mounts::locked_mount_flags(flags)),
                    });
                }
                PlanOp::Symlink { link, target } => ops.push(ChildOp::Symlink {
                    target: cstring(target.as_os_str().as_bytes(), "symlink target")?,
                    link: rel(&link)?,
                }),
            }
        }
        let work_size = spec.limits.work_dir_bytes.max(4096);
        ops.push(ChildOp::Mkdir {
            path: c"work".into(),
        });
        ops.push(ChildOp::Tmpfs {
            target: c"work".into(),
            flags: libc::MS_NOSUID | libc::MS_NODEV,
            options: cstring(
                format!("size={work_size},mode=0755,uid={work_owner},gid={work_owner}"),
                "tmpfs options",
            )?,
        });
        ops.push(ChildOp::Mkdir {
            path: c"proc".into(),
        });
        ops.push(ChildOp::Proc {
            target: c"proc".into(),
        });
        ops.push(ChildOp::Mkdir {
            path: c"dev".into(),
        });
        for d in DEVICES {
            let target = cstring(format!("dev/{d}"), "device")?;
            ops.push(ChildOp::Touch {
                path: target.clone(),
            });
            ops.push(ChildOp::Bind {
                source: cstring(format!("/dev/{d}"), "device")?,
                target,
                recursive: false,
                readonly_flags: None,
            });
        }
        for (link, target) in [
            ("dev/fd", "/proc/self/fd"),
            ("dev/stdin", "/proc/self/fd/0"),
            ("dev/stdout", "/proc/self/fd/1"),
            ("dev/stderr", "/proc/self/fd/2"),
        ] {
            ops.push(ChildOp::Symlink {
                target: cstring(target, "symlink")?,
                link: cstring(link, "symlink")?,
            });
        }
        Ok(ops)
    }

    fn try_run(&self, spec: &RunSpec, channel: Option<OwnedFd>) -> Result<RunReport, RunError> {
        let limits = spec.limits;
        let mut opts = LaunchOptions::program(&self.seccomp);
        opts.stdin = channel.as_ref().map(|c| c.as_raw_fd());
        let launched = self.launch(spec, &opts)?;
        drop(channel);
        let Launched {
            mut child,
            out,
            err,
            mut report_r,
            sync_w,
            cgroup,
            plan,
            go,
            scratch: _scratch,
        } = launched;
        let deadline = go + Duration::from_millis(limits.wall_time_ms);

        let mut out = Capture::new(out, limits.output_bytes);
        let mut err = Capture::new(err, limits.output_bytes);
        let kill = monitor(
            &child,
            &mut out,
            &mut err,
            cgroup.as_ref(),
            deadline,
            limits.cpu_time_ms,
        );
        let exited = Instant::now();
        // Whatever the program wrote before it died is still in the pipes.
        out.pump(usize::MAX);
        err.pump(usize::MAX);
        let kill = overflow_kill(kill, &out, &err);
        let (init_status, ru) = child
            .reap()
            .map_err(io_err("waiting for the sandbox init"))?;
        drop(sync_w);

        let records = read_records(&mut report_r);
        if let Some(msg) = setup_error(&records, &plan, &spec.argv[0]) {
            return Err(msg);
        }
        let exit = records.iter().find(|r| r.0[0] == RECORD_EXIT);
        let total_cpu_us = tv_us(ru.ru_utime).saturating_add(tv_us(ru.ru_stime));
        // The init's own time is sandbox overhead, not the program's.
        let init_cpu_us = exit.map_or(0, |r| u64::from(r.0[3]) | (u64::from(r.0[4]) << 32));
        let mut cpu_ms = total_cpu_us.saturating_sub(init_cpu_us) / 1000;
        if let Some(ns) = cgroup.as_ref().and_then(|c| c.cpu_usage_ns()) {
            // The cgroup also counts processes that escaped the init's reaping (when it
            // had to be SIGKILLed), so take it when it is larger.
            cpu_ms = cpu_ms.max((ns / 1000).saturating_sub(init_cpu_us) / 1000);
        }

        let stats = cgroup.as_ref().map(|c| c.stats()).unwrap_or_default();
        let memory_kb = match (stats.peak_bytes, exit) {
            (Some(p), _) => p / 1024,
            (None, Some(r)) if r.0[2] > 0 => u64::from(r.0[2]),
            _ => ru.ru_maxrss.max(0) as u64,
        };
        let facts = Facts {
            kill,
            program_status: exit.map(|r| r.0[1] as i32),
            init_status,
            cpu_ms,
            limits,
            cgroup: cgroup.is_some(),
            oom_kills: stats.oom_kills,
            peak_bytes: stats.peak_bytes,
        };
        Ok(report_from(
            &facts,
            out,
            err,
            exited.duration_since(go).as_millis() as u64,
            memory_kb,
        ))
        // Drop order: child (reaped), cgroup (removed), scratch (removed).
    }

    /// Starts `spec`'s program in a fresh sandbox and lets it go: everything a run does
    /// before it waits for the program. The caller owns what comes back; dropping it
    /// kills and reaps the init (and so the namespace), then removes the run's cgroup
    /// and scratch dir.
    pub(crate) fn launch(
        &self,
        spec: &RunSpec,
        opts: &LaunchOptions<'_>,
    ) -> Result<Launched, RunError> {
        let n = RUN_COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("run-{}-{n}", cgroup::owner());
        let limits = spec.limits;

        // Everything the child needs is built here, before the clone.
        if spec.argv.is_empty() || !spec.argv[0].starts_with('/') {
            return Err("argv[0] must be an absolute path".into());
        }
        if opts.extra_fds.len() > child::MAX_EXTRA_FDS {
            return Err(format!(
                "at most {} extra descriptors",
                child::MAX_EXTRA_FDS
            ));
        }
        let argv: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstring(a.as_bytes(), "argv"))
            .collect::<Result<_, _>>()?;
        let mut env = Vec::with_capacity(spec.env.len());
        for (k, v) in &spec.env {
            if k.is_empty() || k.contains('=') {
                return Err(format!("invalid environment variable name {k:?}"));
            }
            env.push(cstring(format!("{k}={v}"), "environment")?);
        }
        let mut file_dirs = BTreeSet::new();
        let mut files = Vec::with_capacity(spec.files.len());
        for (p, data) in &spec.files {
            let path = file_path(p)?;
            let mut a = path.parent();
            while let Some(d) = a.filter(|d| !d.as_os_str().is_empty()) {
                file_dirs.insert(d.to_path_buf());
                a = d.parent();
            }
            files.push((
                cstring(path.as_os_str().as_bytes(), "file path")?,
                data.clone(),
            ));
        }
        let file_dirs = file_dirs
            .into_iter()
            .map(|d| cstring(d.as_os_str().as_bytes(), "file path"))
            .collect::<Result<Vec<_>, _>>()?;
        let ids = self.ids_for_run(n);
        let (program_uid, program_gid) = if opts.keep_caps.is_some() {
            (0, 0)
        } else {
            (ids.program_uid, ids.program_gid)
        };
        let ops = self.root_ops(spec, program_uid)?;
        let has_cgroup = self.cgroups.mode() != CgroupMode::None;

        let scratch =
            ScratchDir::create(&self.scratch_dir, &name).map_err(io_err("scratch dir"))?;
        let cgroup: Option<RunCgroup> = self
            .cgroups
            .create_run(
                &name,
                limits.memory_bytes,
                u64::from(limits.processes.max(1)) + 1,
            )
            .map_err(io_err("creating the run cgroup"))?;

        let (sync_r, sync_w) = pipe()?;
        let (report_r, report_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let stdin = match opts.stdin {
            Some(fd) => dup_fd(fd)?,
            None => stdin_memfd(&spec.stdin)?,
        };
        for fd in [&report_r, &out_r, &err_r] {
            set_nonblocking(fd)?;
        }
        let mut keep_fds = vec![
            sync_r.as_raw_fd(),
            report_w.as_raw_fd(),
            stdin.as_raw_fd(),
            out_w.as_raw_fd(),
            err_w.as_raw_fd(),
        ];
        keep_fds.extend_from_slice(opts.extra_fds);
        keep_fds.sort_unstable();

        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(std::ptr::null());
        let mut envp_ptrs: Vec<*const libc::c_char> = env.iter().map(|e| e.as_ptr()).collect();
        envp_ptrs.push(std::ptr::null());
        let plan = ChildPlan {
            sync_r: sync_r.as_raw_fd(),
            report_w: report_w.as_raw_fd(),
            stdin_fd: stdin.as_raw_fd(),
            stdout_w: out_w.as_raw_fd(),
            stderr_w: err_w.as_raw_fd(),
            extra_fds: opts.extra_fds.to_vec(),
            keep_fds,
            scratch: cstring(scratch.0.as_os_str().as_bytes(), "scratch dir")?,
            root_tmpfs_options: c"size=1m,nr_inodes=4096,mode=0755,uid=0,gid=0".into(),
            ops,
            hostname: cstring(HOSTNAME, "hostname")?,
            clear_groups: ids.clear_groups,
            program_uid,
            program_gid,
            lock_securebits: ids.lock_securebits,
            keep_caps: opts.keep_caps,
            file_dirs,
            files,
            rlimits: match &opts.rlimits {
                Some(r) => r.clone(),
                None => rlimits(&limits, has_cgroup, self.cgroups.measures_cpu()),
            },
            seccomp: opts.seccomp.to_vec(),
            argv_ptrs,
            envp_ptrs,
            _argv: argv,
            _env: env,
            backstop_ns: i64::try_from(limits.wall_time_ms.saturating_add(5_000))
                .unwrap_or(i64::MAX / 2_000_000)
                .saturating_mul(1_000_000),
        };

        let flags = (libc::CLONE_NEWUSER
            | libc::CLONE_NEWPID
            | libc::CLONE_NEWNET
            | libc::CLONE_NEWNS
            | libc::CLONE_NEWIPC
            | libc::CLONE_NEWUTS
            | libc::CLONE_NEWCGROUP
            | libc::CLONE_PIDFD) as u64
            | libc::SIGCHLD as u64;
        let mut pidfd: libc::c_int = -1;
        // SAFETY: the child branch only runs init_main, which is async-signal-safe and
        // never returns; the plan's memory is copied into the child with the clone.
        let pid = match unsafe { sys::clone(flags, &mut pidfd) } {
            Ok(0) => {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe {
                    child::init_main(&plan)
                }));
                sys::exit(126)
            }
            Ok(pid) => pid as libc::pid_t,
            Err(e) => return Err(format!("clone: {}", io::Error::from_raw_os_error(e))),
        };
        let mut child = ChildGuard {
            pid,
            // SAFETY: the kernel gave us this pidfd with CLONE_PIDFD.
            pidfd: unsafe { OwnedFd::from_raw_fd(pidfd) },
            reaped: false,
        };
        // The child has its copies; ours of its ends must go so EOFs arrive.
        drop((sync_r, report_w, out_w, err_w, stdin));
        let mut report_r = File::from(report_r);

        let setup = (|| -> Result<(), RunError> {
            let proc = format!("/proc/{pid}");
            if !ids.clear_groups {
                std::fs::write(format!("{proc}/setgroups"), "deny")
                    .map_err(io_err("writing setgroups"))?;
            }
            std::fs::write(format!("{proc}/uid_map"), &ids.uid_map)
                .map_err(io_err("writing uid_map"))?;
            std::fs::write(format!("{proc}/gid_map"), &ids.gid_map)
                .map_err(io_err("writing gid_map"))?;
            if let Some(cg) = &cgroup {
                cg.attach(pid).map_err(io_err("joining the run cgroup"))?;
            }
            Ok(())
        })();
        if let Err(msg) = setup {
            child.kill();
            let _ = child.reap();
            // The child's own report, if it failed first, says more.
            let records = read_records(&mut report_r);
            return Err(setup_error(&records, &plan, &spec.argv[0]).unwrap_or(msg));
        }

        let mut sync_w = File::from(sync_w);
        let go = Instant::now();
        if let Err(e) = sync_w.write_all(b"g") {
            tracing::debug!(error = %e, "child gone before go");
        }
        Ok(Launched {
            child,
            out: out_r,
            err: err_r,
            report_r,
            sync_w,
            cgroup,
            plan,
            go,
            scratch,
        })
    }
}

/// Microseconds in a timeval.
fn tv_us(tv: libc::timeval) -> u64 {
    (tv.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(tv.tv_usec as u64)
}

/// The report for a finished run, from what the parent observed.
pub(crate) fn report_from(
    facts: &Facts,
    out: Capture,
    err: Capture,
    wall_ms: u64,
    memory_kb: u64,
) -> RunReport {
    let o = outcome::classify(facts);
    RunReport {
        status: o.status,
        exit_code: o.exit_code,
        signal: o.signal,
        stdout: String::from_utf8_lossy(&out.buf).into_owned(),
        stderr: String::from_utf8_lossy(&err.buf).into_owned(),
        stdout_truncated: out.truncated,
        stderr_truncated: err.truncated,
        cpu_ms: facts.cpu_ms,
        wall_ms,
        memory_kb,
        message: o.message,
        fuel_used: None,
    }
}

/// How a launched program differs from a submitted program's run.
pub(crate) struct LaunchOptions<'a> {
    /// Descriptors that become the program's fds 3, 4, ...
    pub extra_fds: &'a [RawFd],
    /// None: the program drops to its own ids with no capabilities. Some(mask): it is
    /// trusted sandbox code that stays root of the namespace with these capabilities.
    pub keep_caps: Option<u64>,
    /// The seccomp filter the program runs under.
    pub seccomp: &'a [libc::sock_filter],
    /// The program's rlimits; None derives them from the spec's limits.
    pub rlimits: Option<Vec<Rlimit>>,
    /// A descriptor the program gets as its stdin instead of the spec's bytes.
    pub stdin: Option<RawFd>,
}

impl<'a> LaunchOptions<'a> {
    /// A submitted program: no extra descriptors, no privileges, limits from the spec.
    pub(crate) fn program(seccomp: &'a [libc::sock_filter]) -> LaunchOptions<'a> {
        LaunchOptions {
            extra_fds: &[],
            keep_caps: None,
            seccomp,
            rlimits: None,
            stdin: None,
        }
    }
}

/// A sandboxed program that has been let go. Fields drop in order: the init is killed
/// and reaped first, then the cgroup and the scratch dir are removed.
pub(crate) struct Launched {
    pub child: ChildGuard,
    /// Read ends (non-blocking) of the program's stdout and stderr.
    pub out: OwnedFd,
    pub err: OwnedFd,
    /// The init's report pipe (setup errors, the program's exit record).
    pub report_r: File,
    /// Kept open until the init is reaped, so it never reads a spurious EOF.
    pub sync_w: File,
    pub cgroup: Option<RunCgroup>,
    /// What the child was given, for naming the step of a setup error.
    pub plan: ChildPlan,
    /// When the init was let go.
    pub go: Instant,
    pub scratch: ScratchDir,
}

/// Waits for the init to exit while collecting output, killing the tree at the wall
/// deadline, when the cgroup's CPU time passes the limit, or when output passes the cap.
/// Returns why we killed it, if we did.
fn monitor(
    child: &ChildGuard,
    out: &mut Capture,
    err: &mut Capture,
    cgroup: Option<&RunCgroup>,
    deadline: Instant,
    cpu_limit_ms: u64,
) -> Option<KillReason> {
    /// Why and when we asked the init to stop, and whether it has been SIGKILLed since.
    struct Stop {
        reason: Option<KillReason>,
        asked: Option<Instant>,
        hard_killed: bool,
    }
    impl Stop {
        fn request(&mut self, child: &ChildGuard, reason: KillReason) {
            if self.reason.is_none() {
                child.terminate();
                self.reason = Some(reason);
                self.asked = Some(Instant::now());
            }
        }
    }
    let mut stop = Stop {
        reason: None,
        asked: None,
        hard_killed: false,
    };
    let cpu_limit_ns = cpu_limit_ms.saturating_mul(1_000_000);
    let watch_cpu = cgroup.is_some_and(|c| c.cpu_usage_ns().is_some());
    let mut next_cpu_check = Instant::now() + CPU_CHECK_INTERVAL;
    loop {
        let now = Instant::now();
        if now >= deadline {
            stop.request(child, KillReason::Wall);
        }
        if let Some(t) = stop.asked {
            if !stop.hard_killed && now >= t + STOP_GRACE {
                tracing::warn!("sandbox init did not stop in time; killing it");
                child.kill();
                stop.hard_killed = true;
            }
        }
        let mut wait = match stop.asked {
            Some(t) if !stop.hard_killed => (t + STOP_GRACE).saturating_duration_since(now),
            Some(_) => Duration::from_millis(100),
            None => deadline.saturating_duration_since(now),
        };
        if watch_cpu && stop.reason.is_none() {
            wait = wait.min(next_cpu_check.saturating_duration_since(now));
        }
        let mut fds = vec![libc::pollfd {
            fd: child.pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        for c in [&*out, &*err] {
            if c.open {
                fds.push(libc::pollfd {
                    fd: c.file.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
        }
        // Round up so we do not spin on sub-millisecond remainders.
        let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        // SAFETY: fds is a valid array of pollfd for the call's duration.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            tracing::warn!(error = %io::Error::last_os_error(), "poll failed");
            std::thread::sleep(Duration::from_millis(10));
        }
        let exited = fds[0].revents != 0;
        let ready = |fd: RawFd| fds.iter().any(|p| p.fd == fd && p.revents != 0);
        for (c, is_stdout) in [(&mut *out, true), (&mut *err, false)] {
            if c.open && ready(c.file.as_raw_fd()) && c.pump(1 << 20) {
                stop.request(child, KillReason::Output { stdout: is_stdout });
            }
        }
        if exited {
            return stop.reason;
        }
        if watch_cpu && stop.reason.is_none() && Instant::now() >= next_cpu_check {
            next_cpu_check = Instant::now() + CPU_CHECK_INTERVAL;
            if cgroup
                .and_then(|c| c.cpu_usage_ns())
                .is_some_and(|ns| ns > cpu_limit_ns)
            {
                stop.request(child, KillReason::Cpu);
            }
        }
    }
}

/// Every whole record in the report pipe.
pub(crate) fn read_records(f: &mut File) -> Vec<Record> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match f.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    bytes
        .chunks_exact(Record::SIZE)
        .filter_map(Record::from_bytes)
        .collect()
}

/// The message for the first setup-error record, if any.
pub(crate) fn setup_error(records: &[Record], plan: &ChildPlan, argv0: &str) -> Option<String> {
    let r = records.iter().find(|r| r.0[0] == RECORD_ERROR)?;
    let [_, stage, errno, index, _, _] = r.0;
    let err = io::Error::from_raw_os_error(errno as i32);
    let Some(stage) = Stage::from_u32(stage) else {
        return Some(format!(
            "sandbox setup failed at unknown stage {stage}: {err}"
        ));
    };
    let detail = match stage {
        Stage::Mkdir
        | Stage::Touch
        | Stage::Symlink
        | Stage::Bind
        | Stage::RemountBind
        | Stage::RecursiveReadOnly
        | Stage::MountTmpfs
        | Stage::MountProc => plan
            .ops
            .get(index as usize)
            .map(|op| format!(" {}", op.describe_target()))
            .unwrap_or_default(),
        Stage::WriteFiles => plan
            .files
            .get(index as usize)
            .map(|(p, _)| format!(" /work/{}", p.to_string_lossy()))
            .unwrap_or_default(),
        Stage::Exec => format!(" {argv0}"),
        _ => String::new(),
    };
    Some(format!(
        "sandbox setup failed {}{detail}: {err}",
        stage.describe()
    ))
}

/// Checks that the kernel lets us create every namespace a run needs, with a child that
/// exits at once.
fn probe_namespaces() -> io::Result<()> {
    let flags = (libc::CLONE_NEWUSER
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWCGROUP) as u64
        | libc::SIGCHLD as u64;
    // SAFETY: the child only calls _exit.
    match unsafe { sys::clone(flags, std::ptr::null_mut()) } {
        Ok(0) => sys::exit(0),
        Ok(pid) => {
            let mut status = 0;
            loop {
                // SAFETY: waiting for our own child.
                let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, 0) };
                if r >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            Ok(())
        }
        Err(e) => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sandbox_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<ProcessSandbox>();
    }

    #[test]
    fn rlimits_follow_the_limits() {
        let l = Limits {
            cpu_time_ms: 1500,
            memory_bytes: 256 << 20,
            file_size_bytes: 1 << 20,
            open_files: 32,
            processes: 8,
            ..Limits::default()
        };
        let get = |v: &[Rlimit], res: libc::__rlimit_resource_t| {
            v.iter()
                .find(|r| r.0 == res as libc::c_int)
                .map(|r| (r.1, r.2))
                .unwrap()
        };
        let with_cg = rlimits(&l, true, false);
        assert_eq!(get(&with_cg, libc::RLIMIT_CPU), (2, 3));
        let watched = rlimits(&l, true, true);
        assert_eq!(get(&watched, libc::RLIMIT_CPU), (3, 4));
        assert_eq!(get(&with_cg, libc::RLIMIT_AS).0, (256 << 20) + AS_HEADROOM);
        assert_eq!(get(&with_cg, libc::RLIMIT_FSIZE), (1 << 20, 1 << 20));
        assert_eq!(get(&with_cg, libc::RLIMIT_CORE), (0, 0));
        assert_eq!(get(&with_cg, libc::RLIMIT_NPROC), (8, 8));
        assert!(get(&with_cg, libc::RLIMIT_NOFILE).0 <= 32);
        let without = rlimits(&l, false, false);
        assert_eq!(get(&without, libc::RLIMIT_AS).0, 256 << 20);
        let l = Limits {
            cpu_time_ms: 1000,
            ..l
        };
        assert_eq!(get(&rlimits(&l, true, false), libc::RLIMIT_CPU), (1, 2));
    }

    #[test]
    fn file_paths_must_stay_inside_work() {
        assert!(file_path("main.py").is_ok());
        assert!(file_path("pkg/mod.py").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x"] {
            assert!(file_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn capture_keeps_exactly_the_cap() {
        let (r, w) = pipe().unwrap();
        set_nonblocking(&r).unwrap();
        let mut w = File::from(w);
        w.write_all(&[b'x'; 100]).unwrap();
        let mut c = Capture::new(r, 64);
        assert!(c.pump(usize::MAX));
        assert_eq!(c.buf.len(), 64);
        assert!(c.truncated);

        let (r, w) = pipe().unwrap();
        set_nonblocking(&r).unwrap();
        let mut w = File::from(w);
        w.write_all(&[b'x'; 64]).unwrap();
        drop(w);
        let mut c = Capture::new(r, 64);
        assert!(!c.pump(usize::MAX));
        assert_eq!(c.buf.len(), 64);
        assert!(!c.open, "EOF seen");
    }
}
