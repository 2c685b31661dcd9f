//! Raw system calls for the cloned child.
//!
//! The child of a multithreaded parent may only use async-signal-safe code: no allocation,
//! and none of glibc's wrappers that keep per-thread state (set*id broadcasts to threads
//! that do not exist in the child; fork runs atfork handlers that take malloc locks). So
//! every call here goes straight to `syscall(2)` on data built before the clone.

use libc::{c_char, c_int, c_long, c_uint, c_ulong, c_void};

/// The calling thread's errno.
pub(crate) fn errno() -> i32 {
    // SAFETY: __errno_location always returns a valid pointer to this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Turns a raw syscall return into `Ok(value)` or `Err(errno)`.
#[inline]
pub(crate) fn check(ret: c_long) -> Result<c_long, i32> {
    if ret < 0 {
        Err(errno())
    } else {
        Ok(ret)
    }
}

/// Like [`check`], retrying while the call was interrupted by a signal.
#[inline]
fn retry(mut f: impl FnMut() -> c_long) -> Result<c_long, i32> {
    loop {
        match check(f()) {
            Err(libc::EINTR) => continue,
            other => return other,
        }
    }
}

/// clone(2) without a new stack: the child continues on a copy of the caller's stack,
/// like fork, but with `flags` (namespaces, exit signal). With `CLONE_PIDFD` the kernel
/// stores a pidfd in `*pidfd`. Returns 0 in the child and the child's pid in the parent.
///
/// # Safety
/// The child must only run async-signal-safe code and must end with `_exit`.
pub(crate) unsafe fn clone(flags: u64, pidfd: *mut c_int) -> Result<c_long, i32> {
    // x86_64 argument order: flags, newsp, parent_tid, child_tid, tls.
    check(libc::syscall(
        libc::SYS_clone,
        flags as c_ulong,
        0 as c_ulong,
        pidfd,
        0 as c_ulong,
        0 as c_ulong,
    ))
}

pub(crate) unsafe fn read(fd: c_int, buf: *mut u8, len: usize) -> Result<c_long, i32> {
    retry(|| libc::syscall(libc::SYS_read, fd, buf as *mut c_void, len))
}

/// Writes all of `buf`, retrying short writes and EINTR.
pub(crate) unsafe fn write_all(fd: c_int, mut buf: &[u8]) -> Result<(), i32> {
    while !buf.is_empty() {
        let n = retry(|| {
            libc::syscall(
                libc::SYS_write,
                fd,
                buf.as_ptr() as *const c_void,
                buf.len(),
            )
        })?;
        if n == 0 {
            return Err(libc::EIO);
        }
        buf = buf.get(n as usize..).unwrap_or(&[]);
    }
    Ok(())
}

pub(crate) unsafe fn close(fd: c_int) {
    libc::syscall(libc::SYS_close, fd);
}

/// close_range(2) over `[first, last]`; a no-op when the range is empty.
pub(crate) unsafe fn close_range(first: c_uint, last: c_uint) -> Result<(), i32> {
    if first > last {
        return Ok(());
    }
    check(libc::syscall(
        libc::SYS_close_range,
        first,
        last,
        0 as c_uint,
    ))
    .map(|_| ())
}

pub(crate) unsafe fn dup2(old: c_int, new: c_int) -> Result<(), i32> {
    retry(|| libc::syscall(libc::SYS_dup2, old, new)).map(|_| ())
}

/// Duplicates `fd` onto the lowest free descriptor >= `min`, close-on-exec.
pub(crate) unsafe fn dup_cloexec_above(fd: c_int, min: c_int) -> Result<c_int, i32> {
    check(libc::syscall(
        libc::SYS_fcntl,
        fd,
        libc::F_DUPFD_CLOEXEC,
        min,
    ))
    .map(|v| v as c_int)
}

pub(crate) unsafe fn mount(
    source: *const c_char,
    target: *const c_char,
    fstype: *const c_char,
    flags: c_ulong,
    data: *const c_void,
) -> Result<(), i32> {
    check(libc::syscall(
        libc::SYS_mount,
        source,
        target,
        fstype,
        flags,
        data,
    ))
    .map(|_| ())
}

pub(crate) unsafe fn umount2(target: *const c_char, flags: c_int) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_umount2, target, flags)).map(|_| ())
}

/// The kernel's `struct mount_attr` for mount_setattr(2).
#[repr(C)]
pub(crate) struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

pub(crate) const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub(crate) const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub(crate) const MOUNT_ATTR_NODEV: u64 = 0x4;
const AT_RECURSIVE: c_uint = 0x8000;

/// mount_setattr(2) with AT_RECURSIVE on `target` (relative to the cwd).
pub(crate) unsafe fn mount_setattr_recursive(
    target: *const c_char,
    attr: &MountAttr,
) -> Result<(), i32> {
    check(libc::syscall(
        libc::SYS_mount_setattr,
        libc::AT_FDCWD,
        target,
        AT_RECURSIVE,
        attr as *const MountAttr,
        std::mem::size_of::<MountAttr>(),
    ))
    .map(|_| ())
}

pub(crate) unsafe fn pivot_root(
    new_root: *const c_char,
    put_old: *const c_char,
) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_pivot_root, new_root, put_old)).map(|_| ())
}

pub(crate) unsafe fn chdir(path: *const c_char) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_chdir, path)).map(|_| ())
}

pub(crate) unsafe fn mkdir(path: *const c_char, mode: libc::mode_t) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_mkdir, path, mode)).map(|_| ())
}

pub(crate) unsafe fn symlink(target: *const c_char, link: *const c_char) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_symlink, target, link)).map(|_| ())
}

pub(crate) unsafe fn open(
    path: *const c_char,
    flags: c_int,
    mode: libc::mode_t,
) -> Result<c_int, i32> {
    retry(|| libc::syscall(libc::SYS_open, path, flags, mode)).map(|v| v as c_int)
}

pub(crate) unsafe fn sethostname(name: &[u8]) -> Result<(), i32> {
    check(libc::syscall(
        libc::SYS_sethostname,
        name.as_ptr(),
        name.len(),
    ))
    .map(|_| ())
}

pub(crate) unsafe fn setresuid(id: libc::uid_t) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_setresuid, id, id, id)).map(|_| ())
}

pub(crate) unsafe fn setresgid(id: libc::gid_t) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_setresgid, id, id, id)).map(|_| ())
}

/// setgroups(0, NULL): drops every supplementary group.
pub(crate) unsafe fn clear_groups() -> Result<(), i32> {
    check(libc::syscall(
        libc::SYS_setgroups,
        0 as c_ulong,
        std::ptr::null::<libc::gid_t>(),
    ))
    .map(|_| ())
}

pub(crate) unsafe fn setsid() -> Result<(), i32> {
    check(libc::syscall(libc::SYS_setsid)).map(|_| ())
}

pub(crate) unsafe fn prctl(option: c_int, arg2: c_ulong, arg3: c_ulong) -> Result<c_long, i32> {
    check(libc::syscall(
        libc::SYS_prctl,
        option,
        arg2,
        arg3,
        0 as c_ulong,
        0 as c_ulong,
    ))
}

/// prlimit64(0, resource, new, NULL): sets a limit of the calling process.
pub(crate) unsafe fn setrlimit(resource: c_int, soft: u64, hard: u64) -> Result<(), i32> {
    let lim = libc::rlimit64 {
        rlim_cur: soft,
        rlim_max: hard,
    };
    check(libc::syscall(
        libc::SYS_prlimit64,
        0 as c_int,
        resource,
        &lim as *const libc::rlimit64,
        std::ptr::null_mut::<libc::rlimit64>(),
    ))
    .map(|_| ())
}

/// Zeroes the effective, permitted and inheritable capability sets.
pub(crate) unsafe fn capset_none() -> Result<(), i32> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let mut header = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [Data {
        effective: 0,
        permitted: 0,
        inheritable: 0,
    }; 2];
    check(libc::syscall(
        libc::SYS_capset,
        &mut header as *mut Header,
        data.as_ptr(),
    ))
    .map(|_| ())
}

/// Kernel layout of `struct sigaction` for rt_sigaction(2).
#[repr(C)]
struct KernelSigaction {
    handler: usize,
    flags: c_ulong,
    restorer: usize,
    mask: u64,
}

/// Resets every catchable signal to its default action.
///
/// Handlers copied from the parent would run parent code in the child, and an ignored
/// disposition (Rust ignores SIGPIPE) would survive execve into the program.
pub(crate) unsafe fn reset_signal_dispositions() {
    let dfl = KernelSigaction {
        handler: libc::SIG_DFL,
        flags: 0,
        restorer: 0,
        mask: 0,
    };
    for sig in 1..=64 {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // Errors (e.g. for signal numbers the kernel rejects) leave nothing to undo.
        libc::syscall(
            libc::SYS_rt_sigaction,
            sig,
            &dfl as *const KernelSigaction,
            std::ptr::null_mut::<KernelSigaction>(),
            8usize,
        );
    }
}

/// Bit for `sig` in a kernel signal mask.
pub(crate) const fn sig_bit(sig: c_int) -> u64 {
    1u64 << (sig - 1)
}

/// rt_sigprocmask(how, set) on a 64-bit kernel mask.
pub(crate) unsafe fn sigprocmask(how: c_int, set: u64) -> Result<(), i32> {
    check(libc::syscall(
        libc::SYS_rt_sigprocmask,
        how,
        &set as *const u64,
        std::ptr::null_mut::<u64>(),
        8usize,
    ))
    .map(|_| ())
}

/// Waits up to `timeout_ns` for a signal in `set` (which must be blocked). Returns the
/// signal taken, or None on timeout or interruption.
pub(crate) unsafe fn sigtimedwait(set: u64, timeout_ns: i64) -> Option<c_int> {
    let ts = libc::timespec {
        tv_sec: (timeout_ns / 1_000_000_000) as libc::time_t,
        tv_nsec: (timeout_ns % 1_000_000_000) as libc::c_long,
    };
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    let r = libc::syscall(
        libc::SYS_rt_sigtimedwait,
        &set as *const u64,
        info.as_mut_ptr(),
        &ts as *const libc::timespec,
        8usize,
    );
    (r > 0).then_some(r as c_int)
}

/// kill(pid, sig).
pub(crate) unsafe fn kill(pid: libc::pid_t, sig: c_int) -> Result<(), i32> {
    check(libc::syscall(libc::SYS_kill, pid, sig)).map(|_| ())
}

/// wait4(pid, &status, options, NULL). Returns (pid, status).
pub(crate) unsafe fn wait4(pid: libc::pid_t, options: c_int) -> Result<(libc::pid_t, c_int), i32> {
    let mut status: c_int = 0;
    let r = retry(|| {
        libc::syscall(
            libc::SYS_wait4,
            pid,
            &mut status as *mut c_int,
            options,
            std::ptr::null_mut::<libc::rusage>(),
        )
    })?;
    Ok((r as libc::pid_t, status))
}

/// CLOCK_MONOTONIC in nanoseconds.
pub(crate) unsafe fn monotonic_ns() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    libc::syscall(
        libc::SYS_clock_gettime,
        libc::CLOCK_MONOTONIC,
        &mut ts as *mut libc::timespec,
    );
    ts.tv_sec
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec)
}

/// getrusage(who) via the raw syscall.
pub(crate) unsafe fn getrusage(who: c_int) -> libc::rusage {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    libc::syscall(libc::SYS_getrusage, who, ru.as_mut_ptr());
    ru.assume_init()
}

pub(crate) unsafe fn execve(
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
) -> i32 {
    libc::syscall(libc::SYS_execve, path, argv, envp);
    errno()
}

pub(crate) unsafe fn seccomp_set_filter(prog: &libc::sock_fprog) -> Result<(), i32> {
    check(libc::syscall(
        libc::SYS_seccomp,
        libc::SECCOMP_SET_MODE_FILTER,
        0 as c_uint,
        prog as *const libc::sock_fprog,
    ))
    .map(|_| ())
}

/// Ends the calling process immediately (exit_group), running no atexit handlers.
pub(crate) fn exit(code: c_int) -> ! {
    // SAFETY: _exit never returns and touches no user-space state.
    unsafe { libc::_exit(code) }
}
