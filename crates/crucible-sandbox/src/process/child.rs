//! Code that runs in the cloned child: the sandbox's init (pid 1 of the new pid
//! namespace) and, forked from it, the program (pid 2).
//!
//! Everything here works on a [`ChildPlan`] built by the parent before the clone and
//! makes only raw syscalls (see [`super::sys`]): no allocation, no panics, no glibc
//! functions with internal state. Failures are reported to the parent as a fixed-size
//! [`Record`] on the report pipe, then the process exits.

use super::sys;
use libc::{c_char, c_int, c_ulong};
use std::ffi::CString;
use std::os::fd::RawFd;

/// Where a child-side setup step failed. The number travels over the report pipe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub(crate) enum Stage {
    WaitGo = 1,
    MakePrivate,
    RootTmpfs,
    ChdirRoot,
    SetGid,
    SetGroups,
    SetUid,
    Mkdir,
    Touch,
    Symlink,
    Bind,
    RemountBind,
    RecursiveReadOnly,
    MountTmpfs,
    MountProc,
    PivotRoot,
    DetachOldRoot,
    RemountRoot,
    Hostname,
    ForkProgram,
    Setsid,
    ChdirWork,
    DropCaps,
    WriteFiles,
    Stdio,
    CloseFds,
    Rlimit,
    Seccomp,
    Exec,
}

impl Stage {
    const ALL: [Stage; 29] = [
        Stage::WaitGo,
        Stage::MakePrivate,
        Stage::RootTmpfs,
        Stage::ChdirRoot,
        Stage::SetGid,
        Stage::SetGroups,
        Stage::SetUid,
        Stage::Mkdir,
        Stage::Touch,
        Stage::Symlink,
        Stage::Bind,
        Stage::RemountBind,
        Stage::RecursiveReadOnly,
        Stage::MountTmpfs,
        Stage::MountProc,
        Stage::PivotRoot,
        Stage::DetachOldRoot,
        Stage::RemountRoot,
        Stage::Hostname,
        Stage::ForkProgram,
        Stage::Setsid,
        Stage::ChdirWork,
        Stage::DropCaps,
        Stage::WriteFiles,
        Stage::Stdio,
        Stage::CloseFds,
        Stage::Rlimit,
        Stage::Seccomp,
        Stage::Exec,
    ];

    /// The stage with wire number `n`.
    pub(crate) fn from_u32(n: u32) -> Option<Stage> {
        Stage::ALL.iter().copied().find(|s| *s as u32 == n)
    }

    /// A short human description for error messages.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Stage::WaitGo => "waiting for the parent",
            Stage::MakePrivate => "making mounts private",
            Stage::RootTmpfs => "mounting the root tmpfs",
            Stage::ChdirRoot => "entering the new root",
            Stage::SetGid => "setting the group id",
            Stage::SetGroups => "clearing supplementary groups",
            Stage::SetUid => "setting the user id",
            Stage::Mkdir => "creating a directory",
            Stage::Touch => "creating a mount point file",
            Stage::Symlink => "creating a symlink",
            Stage::Bind => "bind-mounting",
            Stage::RemountBind => "remounting a bind read-only",
            Stage::RecursiveReadOnly => "making submounts read-only",
            Stage::MountTmpfs => "mounting a tmpfs",
            Stage::MountProc => "mounting /proc",
            Stage::PivotRoot => "pivot_root",
            Stage::DetachOldRoot => "detaching the old root",
            Stage::RemountRoot => "remounting the root read-only",
            Stage::Hostname => "setting the hostname",
            Stage::ForkProgram => "forking the program process",
            Stage::Setsid => "setsid",
            Stage::ChdirWork => "entering /work",
            Stage::DropCaps => "dropping capabilities",
            Stage::WriteFiles => "writing the program's files",
            Stage::Stdio => "setting up stdin/stdout/stderr",
            Stage::CloseFds => "closing inherited descriptors",
            Stage::Rlimit => "setting resource limits",
            Stage::Seccomp => "installing the seccomp filter",
            Stage::Exec => "execve",
        }
    }
}

/// Record kinds on the report pipe.
pub(crate) const RECORD_ERROR: u32 = 1;
pub(crate) const RECORD_EXIT: u32 = 2;

/// A fixed-size message from the child to the parent. Writes of this size to a pipe are
/// atomic, so records from the init and the program never interleave.
///
/// - error: `[RECORD_ERROR, stage, errno, index, 0, 0]` (index: which op or file).
/// - exit: `[RECORD_EXIT, wait status, maxrss KiB of reaped children, init cpu µs lo,
///   init cpu µs hi, 0]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record(pub [u32; 6]);

impl Record {
    pub(crate) const SIZE: usize = 24;

    pub(crate) fn to_bytes(self) -> [u8; Record::SIZE] {
        let mut b = [0u8; Record::SIZE];
        for (chunk, v) in b.chunks_exact_mut(4).zip(self.0.iter()) {
            chunk.copy_from_slice(&v.to_ne_bytes());
        }
        b
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Option<Record> {
        if b.len() != Record::SIZE {
            return None;
        }
        let mut r = [0u32; 6];
        for (v, chunk) in r.iter_mut().zip(b.chunks_exact(4)) {
            *v = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Some(Record(r))
    }
}

/// One step of building the new root; paths are relative to the new root's directory
/// (the init's cwd while it builds), sources are absolute host paths.
#[derive(Debug)]
pub(crate) enum ChildOp {
    Mkdir {
        path: CString,
    },
    Touch {
        path: CString,
    },
    Symlink {
        target: CString,
        link: CString,
    },
    Bind {
        source: CString,
        target: CString,
        /// Recursive bind; for directories, so locked submounts come along.
        recursive: bool,
        /// Remount read-only with these extra (locked) flags; None leaves it as bound.
        readonly_flags: Option<c_ulong>,
    },
    Tmpfs {
        target: CString,
        flags: c_ulong,
        options: CString,
    },
    Proc {
        target: CString,
    },
}

impl ChildOp {
    fn stage(&self) -> Stage {
        match self {
            ChildOp::Mkdir { .. } => Stage::Mkdir,
            ChildOp::Touch { .. } => Stage::Touch,
            ChildOp::Symlink { .. } => Stage::Symlink,
            ChildOp::Bind { .. } => Stage::Bind,
            ChildOp::Tmpfs { .. } => Stage::MountTmpfs,
            ChildOp::Proc { .. } => Stage::MountProc,
        }
    }

    /// The path the op acts on inside the new root, for error messages.
    pub(crate) fn describe_target(&self) -> String {
        let p = match self {
            ChildOp::Mkdir { path } | ChildOp::Touch { path } => path,
            ChildOp::Symlink { link, .. } => link,
            ChildOp::Bind { target, .. }
            | ChildOp::Tmpfs { target, .. }
            | ChildOp::Proc { target } => target,
        };
        format!("/{}", p.to_string_lossy())
    }
}

/// A resource limit for the program: (resource, soft, hard).
pub(crate) type Rlimit = (c_int, u64, u64);

/// Everything the child needs, built by the parent before the clone.
pub(crate) struct ChildPlan {
    /// Read end of the "go" pipe.
    pub sync_r: RawFd,
    /// Write end of the report pipe (O_CLOEXEC).
    pub report_w: RawFd,
    pub stdin_fd: RawFd,
    pub stdout_w: RawFd,
    pub stderr_w: RawFd,
    /// Descriptors that become the program's fds 3, 4, ... (at most [`MAX_EXTRA_FDS`]).
    pub extra_fds: Vec<RawFd>,
    /// Every descriptor above, sorted: the init closes everything else.
    pub keep_fds: Vec<RawFd>,
    /// Absolute host path the root tmpfs is mounted on.
    pub scratch: CString,
    pub root_tmpfs_options: CString,
    pub ops: Vec<ChildOp>,
    pub hostname: CString,
    /// Whether the init may (and so must) drop supplementary groups: only when the parent
    /// wrote gid_map without setgroups=deny.
    pub clear_groups: bool,
    /// The program's uid/gid inside the namespace.
    pub program_uid: u32,
    pub program_gid: u32,
    /// The program stays uid 0 inside (unprivileged parent, single-id map): lock the
    /// securebits so uid 0 never regains capabilities.
    pub lock_securebits: bool,
    /// None: the program drops every capability (the normal case). Some(mask): the
    /// program is trusted sandbox code (a fork server's zygote) that stays root of the
    /// namespace and keeps the capabilities in `mask` (bit n = capability n), only over
    /// the sandbox's own namespaces.
    pub keep_caps: Option<u64>,
    /// Directories to create in /work before the files, parents first.
    pub file_dirs: Vec<CString>,
    pub files: Vec<(CString, Vec<u8>)>,
    pub rlimits: Vec<Rlimit>,
    pub seccomp: Vec<libc::sock_filter>,
    /// argv/envp as NULL-terminated pointer arrays into `_argv`/`_env`.
    pub argv_ptrs: Vec<*const c_char>,
    pub envp_ptrs: Vec<*const c_char>,
    pub _argv: Vec<CString>,
    pub _env: Vec<CString>,
    /// The init gives up and kills everything this long after starting the program,
    /// should the parent be gone and unable to enforce the deadline.
    pub backstop_ns: i64,
}

/// Most descriptors a program may get beyond stdin, stdout and stderr.
pub(crate) const MAX_EXTRA_FDS: usize = 4;

// The plan's raw pointers point into its own `_argv`/`_env`, which move with it, and the
// child only reads them; nothing in it is tied to the thread that built it.
unsafe impl Send for ChildPlan {}

/// Reports a setup failure to the parent and exits.
fn fail(report_fd: RawFd, stage: Stage, errno: i32, index: usize) -> ! {
    let rec = Record([RECORD_ERROR, stage as u32, errno as u32, index as u32, 0, 0]);
    // SAFETY: writing a stack buffer to a descriptor we own.
    unsafe {
        let _ = sys::write_all(report_fd, &rec.to_bytes());
    }
    sys::exit(125)
}

/// Closes every descriptor except those in `keep` (sorted ascending).
///
/// Descriptors of the parent's other runs, copied into this child at clone time, would
/// otherwise keep their pipes open.
unsafe fn close_all_except(keep: &[RawFd]) -> Result<(), i32> {
    let mut next: u32 = 0;
    for &fd in keep {
        if fd < 0 {
            continue;
        }
        let fd = fd as u32;
        if fd > next {
            sys::close_range(next, fd - 1)?;
        }
        next = fd.saturating_add(1);
    }
    sys::close_range(next, u32::MAX)
}

const MS_BIND_REMOUNT: c_ulong = libc::MS_BIND | libc::MS_REMOUNT;

unsafe fn run_op(op: &ChildOp) -> Result<(), (Stage, i32)> {
    let s = op.stage();
    match op {
        ChildOp::Mkdir { path } => match sys::mkdir(path.as_ptr(), 0o755) {
            Ok(()) | Err(libc::EEXIST) => Ok(()),
            Err(e) => Err((s, e)),
        },
        ChildOp::Touch { path } => {
            let fd = sys::open(
                path.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_CLOEXEC,
                0o644,
            )
            .map_err(|e| (s, e))?;
            sys::close(fd);
            Ok(())
        }
        ChildOp::Symlink { target, link } => {
            sys::symlink(target.as_ptr(), link.as_ptr()).map_err(|e| (s, e))
        }
        ChildOp::Bind {
            source,
            target,
            recursive,
            readonly_flags,
        } => {
            let rec = if *recursive { libc::MS_REC } else { 0 };
            sys::mount(
                source.as_ptr(),
                target.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND | rec,
                std::ptr::null(),
            )
            .map_err(|e| (Stage::Bind, e))?;
            if let Some(extra) = readonly_flags {
                sys::mount(
                    std::ptr::null(),
                    target.as_ptr(),
                    std::ptr::null(),
                    MS_BIND_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | extra,
                    std::ptr::null(),
                )
                .map_err(|e| (Stage::RemountBind, e))?;
                if *recursive {
                    // The remount only covers the top mount; submounts that came along
                    // with MS_REC need mount_setattr (Linux 5.12+).
                    let attr = sys::MountAttr {
                        attr_set: sys::MOUNT_ATTR_RDONLY
                            | sys::MOUNT_ATTR_NOSUID
                            | sys::MOUNT_ATTR_NODEV,
                        attr_clr: 0,
                        propagation: 0,
                        userns_fd: 0,
                    };
                    match sys::mount_setattr_recursive(target.as_ptr(), &attr) {
                        Ok(()) | Err(libc::ENOSYS) => {}
                        Err(e) => return Err((Stage::RecursiveReadOnly, e)),
                    }
                }
            }
            Ok(())
        }
        ChildOp::Tmpfs {
            target,
            flags,
            options,
        } => sys::mount(
            c"tmpfs".as_ptr(),
            target.as_ptr(),
            c"tmpfs".as_ptr(),
            *flags,
            options.as_ptr() as *const libc::c_void,
        )
        .map_err(|e| (s, e)),
        ChildOp::Proc { target } => sys::mount(
            c"proc".as_ptr(),
            target.as_ptr(),
            c"proc".as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
            std::ptr::null(),
        )
        .map_err(|e| (s, e)),
    }
}

/// Entry point of the init, pid 1 of the new pid namespace. Never returns.
///
/// # Safety
/// Must only be called in the child right after the namespace clone, with `p` built by
/// the parent before it.
pub(crate) unsafe fn init_main(p: &ChildPlan) -> ! {
    let rep = p.report_w;
    if let Err(e) = close_all_except(&p.keep_fds) {
        fail(rep, Stage::CloseFds, e, 0);
    }
    sys::reset_signal_dispositions();
    // SIGCHLD and SIGTERM stay blocked for the init's whole life: it takes them with
    // sigtimedwait. A blocked signal is queued even for a namespace init, so the
    // parent's SIGTERM ("stop the run") is never lost, even during setup.
    let waited = sys::sig_bit(libc::SIGCHLD) | sys::sig_bit(libc::SIGTERM);
    let _ = sys::sigprocmask(libc::SIG_SETMASK, waited);
    // Die with the parent thread: nobody would enforce the deadline otherwise.
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0);

    // The parent writes our uid/gid maps and joins us to the cgroup, then says go.
    let mut go = 0u8;
    match sys::read(p.sync_r, &mut go, 1) {
        Ok(1) => {}
        Ok(_) => sys::exit(0), // the parent gave up on this run
        Err(e) => fail(rep, Stage::WaitGo, e, 0),
    }
    sys::close(p.sync_r);

    // Nothing mounted from here on may propagate back to the host.
    if let Err(e) = sys::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        libc::MS_REC | libc::MS_PRIVATE,
        std::ptr::null(),
    ) {
        fail(rep, Stage::MakePrivate, e, 0);
    }
    // Still host uid 0 here (unmapped, no host capabilities), so the scratch dir's owner
    // permissions let us reach it; after this, all paths are relative to the new root.
    if let Err(e) = sys::mount(
        c"tmpfs".as_ptr(),
        p.scratch.as_ptr(),
        c"tmpfs".as_ptr(),
        libc::MS_NOSUID | libc::MS_NODEV,
        p.root_tmpfs_options.as_ptr() as *const libc::c_void,
    ) {
        fail(rep, Stage::RootTmpfs, e, 0);
    }
    if let Err(e) = sys::chdir(p.scratch.as_ptr()) {
        fail(rep, Stage::ChdirRoot, e, 0);
    }

    // Become root of the namespace (a mapped id), which files created in our own tmpfs
    // mounts need; we keep the namespace's capabilities.
    if let Err(e) = sys::setresgid(0) {
        fail(rep, Stage::SetGid, e, 0);
    }
    if p.clear_groups {
        if let Err(e) = sys::clear_groups() {
            fail(rep, Stage::SetGroups, e, 0);
        }
    }
    if let Err(e) = sys::setresuid(0) {
        fail(rep, Stage::SetUid, e, 0);
    }
    // A credential change clears the parent-death signal; set it again.
    let _ = sys::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as c_ulong, 0);

    for (i, op) in p.ops.iter().enumerate() {
        if let Err((stage, e)) = run_op(op) {
            fail(rep, stage, e, i);
        }
    }

    // Swap roots: stack the old root under the new one, then detach it.
    if let Err(e) = sys::pivot_root(c".".as_ptr(), c".".as_ptr()) {
        fail(rep, Stage::PivotRoot, e, 0);
    }
    if let Err(e) = sys::umount2(c".".as_ptr(), libc::MNT_DETACH) {
        fail(rep, Stage::DetachOldRoot, e, 0);
    }
    if let Err(e) = sys::chdir(c"/".as_ptr()) {
        fail(rep, Stage::PivotRoot, e, 0);
    }
    if let Err(e) = sys::mount(
        std::ptr::null(),
        c"/".as_ptr(),
        std::ptr::null(),
        MS_BIND_REMOUNT | libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV,
        std::ptr::null(),
    ) {
        fail(rep, Stage::RemountRoot, e, 0);
    }
    if let Err(e) = sys::sethostname(p.hostname.as_bytes()) {
        fail(rep, Stage::Hostname, e, 0);
    }

    let program = match sys::clone(libc::SIGCHLD as u64, std::ptr::null_mut()) {
        Ok(0) => program_main(p),
        Ok(pid) => pid as libc::pid_t,
        Err(e) => fail(rep, Stage::ForkProgram, e, 0),
    };
    sys::close(p.stdin_fd);
    sys::close(p.stdout_w);
    sys::close(p.stderr_w);
    // The program's extra descriptors (a fork server's control socket) must not stay
    // open here, or their other end would never see EOF when the program dies.
    for &fd in &p.extra_fds {
        sys::close(fd);
    }

    // Reap everything (orphans get reparented to us) until the program itself exits or
    // the parent asks us to stop.
    let backstop = sys::monotonic_ns().saturating_add(p.backstop_ns);
    let mut program_status: Option<c_int> = None;
    'outer: loop {
        loop {
            match sys::wait4(-1, libc::WNOHANG | libc::__WALL) {
                Ok((0, _)) => break,
                Ok((pid, status)) => {
                    if pid == program {
                        program_status = Some(status);
                        break 'outer;
                    }
                }
                Err(_) => break 'outer, // ECHILD: nothing left to wait for
            }
        }
        let left = backstop.saturating_sub(sys::monotonic_ns());
        if left <= 0 {
            break;
        }
        if sys::sigtimedwait(waited, left.min(1_000_000_000)) == Some(libc::SIGTERM) {
            break;
        }
    }
    // Kill whatever is left and reap it ourselves: processes the kernel kills when a
    // namespace init exits are auto-reaped, and their CPU time would never reach our
    // rusage. Repeat the kill in case something forked meanwhile.
    loop {
        let _ = sys::kill(-1, libc::SIGKILL);
        match sys::wait4(-1, libc::__WALL) {
            Ok((pid, status)) => {
                if pid == program && program_status.is_none() {
                    program_status = Some(status);
                }
            }
            Err(_) => break,
        }
    }

    let children = sys::getrusage(libc::RUSAGE_CHILDREN);
    let me = sys::getrusage(libc::RUSAGE_SELF);
    let tv_us = |tv: libc::timeval| {
        (tv.tv_sec as u64)
            .saturating_mul(1_000_000)
            .saturating_add(tv.tv_usec as u64)
    };
    let init_cpu_us = tv_us(me.ru_utime).saturating_add(tv_us(me.ru_stime));
    if let Some(status) = program_status {
        let rec = Record([
            RECORD_EXIT,
            status as u32,
            children.ru_maxrss.clamp(0, u32::MAX as libc::c_long) as u32,
            init_cpu_us as u32,
            (init_cpu_us >> 32) as u32,
            0,
        ]);
        let _ = sys::write_all(rep, &rec.to_bytes());
    }
    // Our exit makes the kernel kill whatever is left in the namespace.
    sys::exit(0)
}

/// The program process (pid 2): drop privileges, set up stdio and limits, exec.
unsafe fn program_main(p: &ChildPlan) -> ! {
    // Move the report pipe above the numbers the program's descriptors get, so the
    // dup2s below cannot clobber it.
    let floor = 3 + p.extra_fds.len().min(MAX_EXTRA_FDS) as c_int;
    let rep = match sys::dup_cloexec_above(p.report_w, floor) {
        Ok(fd) => fd,
        Err(e) => fail(p.report_w, Stage::Stdio, e, 0),
    };
    let _ = sys::sigprocmask(libc::SIG_SETMASK, 0);
    if let Err(e) = sys::setsid() {
        fail(rep, Stage::Setsid, e, 0);
    }
    // Prefer the program over the init when the cgroup runs out of memory. Raising the
    // score needs no privilege; failure only changes who the OOM killer picks.
    if let Ok(fd) = sys::open(
        c"/proc/self/oom_score_adj".as_ptr(),
        libc::O_WRONLY | libc::O_CLOEXEC,
        0,
    ) {
        let _ = sys::write_all(fd, b"1000");
        sys::close(fd);
    }
    if let Err(e) = sys::chdir(c"/work".as_ptr()) {
        fail(rep, Stage::ChdirWork, e, 0);
    }

    match p.keep_caps {
        None => drop_privileges(p, rep),
        Some(mask) => keep_root(p, rep, mask),
    }

    // The program's files, written as the program's user so it owns them.
    for (i, d) in p.file_dirs.iter().enumerate() {
        match sys::mkdir(d.as_ptr(), 0o755) {
            Ok(()) | Err(libc::EEXIST) => {}
            Err(e) => fail(rep, Stage::WriteFiles, e, i),
        }
    }
    for (i, (path, data)) in p.files.iter().enumerate() {
        let flags =
            libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        let fd = match sys::open(path.as_ptr(), flags, 0o644) {
            Ok(fd) => fd,
            Err(e) => fail(rep, Stage::WriteFiles, e, i),
        };
        if let Err(e) = sys::write_all(fd, data) {
            fail(rep, Stage::WriteFiles, e, i);
        }
        sys::close(fd);
    }

    // stdio and the extra descriptors: first copy them all above their target numbers,
    // then put them in place, so no source is overwritten before it is used whatever
    // numbers the parent's descriptors got.
    let extra = p.extra_fds.len().min(MAX_EXTRA_FDS);
    let mut high = [-1; 3 + MAX_EXTRA_FDS];
    let sources = [p.stdin_fd, p.stdout_w, p.stderr_w]
        .into_iter()
        .chain(p.extra_fds.iter().copied().take(extra));
    for (slot, fd) in high.iter_mut().zip(sources) {
        *slot = match sys::dup_cloexec_above(fd, floor) {
            Ok(h) => h,
            Err(e) => fail(rep, Stage::Stdio, e, 0),
        };
    }
    for (target, fd) in high.iter().take(3 + extra).enumerate() {
        if let Err(e) = sys::dup2(*fd, target as c_int) {
            fail(rep, Stage::Stdio, e, target);
        }
    }
    let rep_u = rep as u32;
    if let Err(e) = sys::close_range(floor as u32, rep_u.saturating_sub(1))
        .and_then(|_| sys::close_range(rep_u + 1, u32::MAX))
    {
        fail(rep, Stage::CloseFds, e, 0);
    }

    for (i, &(resource, soft, hard)) in p.rlimits.iter().enumerate() {
        if let Err(e) = sys::setrlimit(resource, soft, hard) {
            fail(rep, Stage::Rlimit, e, i);
        }
    }
    // Last, since the filter forbids some of the calls above.
    if let Err(e) = super::seccomp::install(&p.seccomp) {
        fail(rep, Stage::Seccomp, e, 0);
    }
    let e = sys::execve(
        *p.argv_ptrs.as_ptr(),
        p.argv_ptrs.as_ptr(),
        p.envp_ptrs.as_ptr(),
    );
    fail(rep, Stage::Exec, e, 0)
}

/// The normal program: empty the bounding set, leave root for the program's ids, and
/// drop every capability.
unsafe fn drop_privileges(p: &ChildPlan, rep: RawFd) {
    // Capabilities: empty the bounding set while we still may, then leave root.
    for cap in 0..64 {
        match sys::prctl(libc::PR_CAPBSET_DROP, cap, 0) {
            Ok(_) | Err(libc::EINVAL) => {}
            Err(e) => fail(rep, Stage::DropCaps, e, cap as usize),
        }
    }
    if p.lock_securebits {
        let bits = libc::SECBIT_NOROOT
            | libc::SECBIT_NOROOT_LOCKED
            | libc::SECBIT_NO_SETUID_FIXUP
            | libc::SECBIT_NO_SETUID_FIXUP_LOCKED
            | libc::SECBIT_KEEP_CAPS_LOCKED
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE
            | libc::SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
        if let Err(e) = sys::prctl(libc::PR_SET_SECUREBITS, bits as c_ulong, 0) {
            fail(rep, Stage::DropCaps, e, 0);
        }
    }
    if let Err(e) = sys::setresgid(p.program_gid) {
        fail(rep, Stage::SetGid, e, 1);
    }
    if let Err(e) = sys::setresuid(p.program_uid) {
        fail(rep, Stage::SetUid, e, 1);
    }
    let _ = sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
        0,
    );
    if let Err(e) = sys::capset_none() {
        fail(rep, Stage::DropCaps, e, 0);
    }
}

/// Trusted sandbox code (a zygote): stay root of the namespace, with only the
/// capabilities in `mask` left in the bounding set, so execve grants no others.
unsafe fn keep_root(p: &ChildPlan, rep: RawFd, mask: u64) {
    for cap in 0..64u64 {
        if mask & (1 << cap) != 0 {
            continue;
        }
        match sys::prctl(libc::PR_CAPBSET_DROP, cap as c_ulong, 0) {
            Ok(_) | Err(libc::EINVAL) => {}
            Err(e) => fail(rep, Stage::DropCaps, e, cap as usize),
        }
    }
    if let Err(e) = sys::setresgid(p.program_gid) {
        fail(rep, Stage::SetGid, e, 1);
    }
    if let Err(e) = sys::setresuid(p.program_uid) {
        fail(rep, Stage::SetUid, e, 1);
    }
    let _ = sys::prctl(
        libc::PR_CAP_AMBIENT,
        libc::PR_CAP_AMBIENT_CLEAR_ALL as c_ulong,
        0,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trip() {
        let r = Record([RECORD_EXIT, 0x0900, 12345, 7, 1, 0]);
        assert_eq!(Record::from_bytes(&r.to_bytes()), Some(r));
        assert_eq!(Record::from_bytes(&[0u8; 5]), None);
    }

    #[test]
    fn stage_numbers_round_trip() {
        for s in Stage::ALL {
            assert_eq!(Stage::from_u32(s as u32), Some(s));
            assert!(!s.describe().is_empty());
        }
        assert_eq!(Stage::from_u32(0), None);
        assert_eq!(Stage::from_u32(Stage::Exec as u32 + 1), None);
    }
}
