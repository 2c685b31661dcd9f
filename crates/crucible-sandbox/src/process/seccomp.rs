//! The seccomp-BPF filter every sandboxed program runs under.
//!
//! A deny list over a default-allow policy: interpreters and compilers need a wide and
//! shifting set of ordinary syscalls, while the dangerous ones (kernel attack surface,
//! namespace and mount games, tracing, networking) are few and stable.

use libc::{c_long, sock_filter};

/// `AUDIT_ARCH_X86_64` from linux/audit.h (EM_X86_64 | 64-bit | little-endian).
pub(crate) const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
/// Syscall numbers with this bit set are the x32 ABI, which the filter refuses.
pub(crate) const X32_SYSCALL_BIT: u32 = 0x4000_0000;

// Offsets into `struct seccomp_data`: nr (u32), arch (u32), ip (u64), args[6] (u64).
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// Low 32 bits of args[0] on a little-endian machine.
const OFF_ARG0_LO: u32 = 16;

/// Every CLONE_NEW* flag that clone(2) accepts in its low 32 bits (CLONE_NEWTIME only
/// exists for clone3/unshare; in clone's flags that bit is part of the exit signal).
pub(crate) const CLONE_NEW_MASK: u32 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWCGROUP
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET) as u32;

/// Syscalls refused outright with EPERM, with their names for documentation and tests.
pub(crate) const DENIED: &[(c_long, &str)] = &[
    (libc::SYS_ptrace, "ptrace"),
    (libc::SYS_mount, "mount"),
    (libc::SYS_umount2, "umount2"),
    (libc::SYS_pivot_root, "pivot_root"),
    (libc::SYS_chroot, "chroot"),
    (libc::SYS_bpf, "bpf"),
    (libc::SYS_perf_event_open, "perf_event_open"),
    (libc::SYS_keyctl, "keyctl"),
    (libc::SYS_add_key, "add_key"),
    (libc::SYS_request_key, "request_key"),
    (libc::SYS_io_uring_setup, "io_uring_setup"),
    (libc::SYS_io_uring_enter, "io_uring_enter"),
    (libc::SYS_io_uring_register, "io_uring_register"),
    (libc::SYS_unshare, "unshare"),
    (libc::SYS_setns, "setns"),
    (libc::SYS_kexec_load, "kexec_load"),
    (libc::SYS_kexec_file_load, "kexec_file_load"),
    (libc::SYS_init_module, "init_module"),
    (libc::SYS_finit_module, "finit_module"),
    (libc::SYS_delete_module, "delete_module"),
    (libc::SYS_userfaultfd, "userfaultfd"),
    (libc::SYS_process_vm_readv, "process_vm_readv"),
    (libc::SYS_process_vm_writev, "process_vm_writev"),
    (libc::SYS_open_by_handle_at, "open_by_handle_at"),
    (libc::SYS_name_to_handle_at, "name_to_handle_at"),
    (libc::SYS_fsopen, "fsopen"),
    (libc::SYS_fsconfig, "fsconfig"),
    (libc::SYS_fsmount, "fsmount"),
    (libc::SYS_fspick, "fspick"),
    (libc::SYS_move_mount, "move_mount"),
    (libc::SYS_open_tree, "open_tree"),
    (libc::SYS_mount_setattr, "mount_setattr"),
    (libc::SYS_swapon, "swapon"),
    (libc::SYS_swapoff, "swapoff"),
    (libc::SYS_reboot, "reboot"),
    (libc::SYS_acct, "acct"),
    (libc::SYS_syslog, "syslog"),
    (libc::SYS_quotactl, "quotactl"),
    (libc::SYS_quotactl_fd, "quotactl_fd"),
    (libc::SYS_settimeofday, "settimeofday"),
    (libc::SYS_clock_settime, "clock_settime"),
    (libc::SYS_adjtimex, "adjtimex"),
    (libc::SYS_clock_adjtime, "clock_adjtime"),
    (libc::SYS_iopl, "iopl"),
    (libc::SYS_ioperm, "ioperm"),
    (libc::SYS_kcmp, "kcmp"),
    (libc::SYS_pidfd_getfd, "pidfd_getfd"),
    (libc::SYS_process_madvise, "process_madvise"),
    (libc::SYS_lookup_dcookie, "lookup_dcookie"),
];

fn stmt(code: u32, k: u32) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn load(offset: u32) -> sock_filter {
    stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(action: u32) -> sock_filter {
    stmt(libc::BPF_RET | libc::BPF_K, action)
}

fn errno(e: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (e as u32 & libc::SECCOMP_RET_DATA)
}

/// Which programs a filter is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Policy {
    /// Submitted programs: the full deny list.
    Program,
    /// A fork server's zygote, which runs only trusted code and gives each child a
    /// fresh IPC namespace and work dir: the program policy, except that `mount` and
    /// `umount2` are allowed, and `unshare` for CLONE_NEWIPC alone.
    Zygote,
    /// What each child of a zygote adds on top of the zygote's filter before it runs
    /// submitted code: `mount`, `umount2` and `unshare` refused. Stacked filters take
    /// the strictest answer, so a child runs under exactly the program policy (see the
    /// test `zygote_and_child_filters_stack_to_the_program_policy`), while the kernel
    /// only has this small program to check and compile per child.
    ZygoteChild,
}

/// The `unshare` flags a zygote may use.
pub(crate) const ZYGOTE_UNSHARE: u32 = libc::CLONE_NEWIPC as u32;

/// Syscalls the zygote policy allows that the program policy refuses (unshare only
/// with [`ZYGOTE_UNSHARE`]).
const ZYGOTE_ONLY: [c_long; 3] = [libc::SYS_mount, libc::SYS_umount2, libc::SYS_unshare];

/// Builds the filter every submitted program runs under.
pub(crate) fn build_filter() -> Vec<sock_filter> {
    build(Policy::Program)
}

/// The filter as the kernel's `struct sock_filter` array in bytes (native endian), as a
/// zygote receives it to install in each child.
pub(crate) fn to_bytes(filter: &[sock_filter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(filter.len() * 8);
    for ins in filter {
        out.extend_from_slice(&ins.code.to_ne_bytes());
        out.push(ins.jt);
        out.push(ins.jf);
        out.extend_from_slice(&ins.k.to_ne_bytes());
    }
    out
}

/// Builds the filter program for `policy`.
///
/// Layout of the program and zygote policies: check the arch (kill on anything but x86_64), load the syscall number, kill
/// x32 numbers, then one small block per rule. Blocks that inspect an argument end in a
/// return on both branches, since they overwrite the accumulator that held the number.
/// Every jump is short (at most 4), so no offset can overflow the u8 jump fields.
pub(crate) fn build(policy: Policy) -> Vec<sock_filter> {
    let jeq = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;
    let jge = libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K;
    let jset = libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K;
    let kill = libc::SECCOMP_RET_KILL_PROCESS;
    let allow = libc::SECCOMP_RET_ALLOW;

    if policy == Policy::ZygoteChild {
        // The zygote's filter below this one has already checked the architecture.
        let mut p = vec![load(OFF_NR)];
        for nr in ZYGOTE_ONLY {
            p.push(jump(jeq, nr as u32, 0, 1));
            p.push(ret(errno(libc::EPERM)));
        }
        p.push(ret(allow));
        return p;
    }

    let mut p = vec![
        load(OFF_ARCH),
        jump(jeq, AUDIT_ARCH_X86_64, 1, 0),
        ret(kill),
        load(OFF_NR),
        jump(jge, X32_SYSCALL_BIT, 0, 1),
        ret(kill),
    ];
    for &(nr, _) in DENIED {
        if policy == Policy::Zygote && ZYGOTE_ONLY.contains(&nr) {
            continue;
        }
        p.push(jump(jeq, nr as u32, 0, 1));
        p.push(ret(errno(libc::EPERM)));
    }
    if policy == Policy::Zygote {
        p.push(jump(jeq, libc::SYS_unshare as u32, 0, 4));
        p.push(load(OFF_ARG0_LO));
        p.push(jump(jset, !ZYGOTE_UNSHARE, 0, 1));
        p.push(ret(errno(libc::EPERM)));
        p.push(ret(allow));
    }
    // clone3 passes its flags in memory that BPF cannot read, so it is refused as
    // "not implemented": libc then falls back to clone, whose flags are checked below.
    p.push(jump(jeq, libc::SYS_clone3 as u32, 0, 1));
    p.push(ret(errno(libc::ENOSYS)));
    // Only local (AF_UNIX) sockets: no network even if a namespace were misconfigured.
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        p.push(jump(jeq, nr as u32, 0, 4));
        p.push(load(OFF_ARG0_LO));
        p.push(jump(jeq, libc::AF_UNIX as u32, 0, 1));
        p.push(ret(allow));
        p.push(ret(errno(libc::EAFNOSUPPORT)));
    }
    // clone may make threads and processes but not namespaces.
    p.push(jump(jeq, libc::SYS_clone as u32, 0, 4));
    p.push(load(OFF_ARG0_LO));
    p.push(jump(jset, CLONE_NEW_MASK, 0, 1));
    p.push(ret(errno(libc::EPERM)));
    p.push(ret(allow));
    p.push(ret(allow));
    p
}

/// Sets no_new_privs and installs `filter` on the calling thread.
///
/// Async-signal-safe: it only makes syscalls on the caller's prebuilt program.
/// Returns the errno of the failing call.
///
/// # Safety
/// The filter applies to the calling process for the rest of its life.
pub(crate) unsafe fn install(filter: &[sock_filter]) -> Result<(), i32> {
    super::sys::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0)?;
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut sock_filter,
    };
    super::sys::seccomp_set_filter(&prog)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the kernel would decide for one syscall: a tiny interpreter for the opcodes
    /// the builder emits, so the program's logic is checked without installing it.
    fn evaluate(prog: &[sock_filter], arch: u32, nr: u32, arg0: u64) -> u32 {
        let mut data = [0u8; 64];
        data[0..4].copy_from_slice(&nr.to_le_bytes());
        data[4..8].copy_from_slice(&arch.to_le_bytes());
        data[16..24].copy_from_slice(&arg0.to_le_bytes());
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let ins = prog[pc];
            let code = ins.code as u32;
            match code {
                c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                    let k = ins.k as usize;
                    acc = u32::from_le_bytes(data[k..k + 4].try_into().unwrap());
                    pc += 1;
                }
                c if c == libc::BPF_RET | libc::BPF_K => return ins.k,
                c if c & 0x07 == libc::BPF_JMP => {
                    let taken = match c & 0xf0 {
                        x if x == libc::BPF_JEQ => acc == ins.k,
                        x if x == libc::BPF_JGE => acc >= ins.k,
                        x if x == libc::BPF_JSET => acc & ins.k != 0,
                        other => panic!("unexpected jump op {other:#x}"),
                    };
                    pc += 1 + if taken { ins.jt } else { ins.jf } as usize;
                }
                other => panic!("unexpected opcode {other:#x}"),
            }
        }
    }

    fn decide(nr: c_long, arg0: u64) -> u32 {
        evaluate(&build_filter(), AUDIT_ARCH_X86_64, nr as u32, arg0)
    }

    #[test]
    fn zygote_policy_allows_only_its_namespaces() {
        let z = build(Policy::Zygote);
        let d = |nr: c_long, arg0: u64| evaluate(&z, AUDIT_ARCH_X86_64, nr as u32, arg0);
        assert_eq!(d(libc::SYS_mount, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(d(libc::SYS_umount2, 0), libc::SECCOMP_RET_ALLOW);
        assert_eq!(
            d(libc::SYS_unshare, libc::CLONE_NEWIPC as u64),
            libc::SECCOMP_RET_ALLOW
        );
        for bad in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWIPC | libc::CLONE_NEWUSER,
        ] {
            assert_eq!(d(libc::SYS_unshare, bad as u64), errno(libc::EPERM));
        }
        assert_eq!(d(libc::SYS_ptrace, 0), errno(libc::EPERM));
        assert_eq!(d(libc::SYS_setns, 0), errno(libc::EPERM));
        assert_eq!(d(libc::SYS_pivot_root, 0), errno(libc::EPERM));
    }

    /// What the kernel decides for stacked filters: the most severe action (for
    /// actions, a smaller value as i32 is more severe: KILL_PROCESS, KILL_THREAD, TRAP,
    /// ERRNO, ..., ALLOW).
    fn stacked(filters: &[&[sock_filter]], arch: u32, nr: u32, arg0: u64) -> u32 {
        filters
            .iter()
            .map(|f| evaluate(f, arch, nr, arg0))
            .min_by_key(|r| (r & libc::SECCOMP_RET_ACTION_FULL) as i32)
            .unwrap()
    }

    #[test]
    fn zygote_and_child_filters_stack_to_the_program_policy() {
        let program = build(Policy::Program);
        let zygote = build(Policy::Zygote);
        let child = build(Policy::ZygoteChild);
        assert!(child.len() < 10, "the per-child filter stays tiny");
        let args: Vec<u64> = [
            0,
            libc::AF_UNIX as u64,
            libc::AF_INET as u64,
            libc::SIGCHLD as u64,
        ]
        .into_iter()
        .chain(
            [
                libc::CLONE_NEWNS,
                libc::CLONE_NEWIPC,
                libc::CLONE_NEWUSER,
                libc::CLONE_NEWPID,
                libc::CLONE_NEWNET,
                libc::CLONE_THREAD | libc::CLONE_VM,
            ]
            .map(|f| f as u64),
        )
        .collect();
        for arch in [AUDIT_ARCH_X86_64, 0x4000_0003] {
            for nr in (0..470u32).chain([X32_SYSCALL_BIT, X32_SYSCALL_BIT | 1]) {
                for &a in &args {
                    assert_eq!(
                        stacked(&[&zygote, &child], arch, nr, a),
                        evaluate(&program, arch, nr, a),
                        "arch {arch:#x} syscall {nr} arg0 {a:#x}"
                    );
                }
            }
        }
    }

    #[test]
    fn bytes_match_the_kernel_layout() {
        let f = build_filter();
        let b = to_bytes(&f);
        assert_eq!(b.len(), f.len() * std::mem::size_of::<sock_filter>());
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), f[0].code);
        assert_eq!(u32::from_ne_bytes([b[4], b[5], b[6], b[7]]), f[0].k);
    }

    #[test]
    fn wrong_arch_and_x32_are_killed() {
        let p = build_filter();
        assert_eq!(
            evaluate(&p, 0x4000_0003, libc::SYS_read as u32, 0),
            libc::SECCOMP_RET_KILL_PROCESS
        );
        assert_eq!(
            evaluate(
                &p,
                AUDIT_ARCH_X86_64,
                X32_SYSCALL_BIT | libc::SYS_read as u32,
                0
            ),
            libc::SECCOMP_RET_KILL_PROCESS
        );
    }

    #[test]
    fn ordinary_syscalls_are_allowed() {
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_mmap,
            libc::SYS_execve,
            libc::SYS_exit_group,
            libc::SYS_wait4,
        ] {
            assert_eq!(decide(nr, 0), libc::SECCOMP_RET_ALLOW, "syscall {nr}");
        }
    }

    #[test]
    fn every_denied_syscall_gets_eperm() {
        for &(nr, name) in DENIED {
            assert_eq!(decide(nr, 0), errno(libc::EPERM), "{name}");
        }
        assert_eq!(decide(libc::SYS_clone3, 0), errno(libc::ENOSYS));
    }

    #[test]
    fn sockets_only_for_af_unix() {
        for nr in [libc::SYS_socket, libc::SYS_socketpair] {
            assert_eq!(decide(nr, libc::AF_UNIX as u64), libc::SECCOMP_RET_ALLOW);
            for domain in [
                libc::AF_INET,
                libc::AF_INET6,
                libc::AF_NETLINK,
                libc::AF_PACKET,
            ] {
                assert_eq!(decide(nr, domain as u64), errno(libc::EAFNOSUPPORT));
            }
        }
    }

    #[test]
    fn clone_without_namespaces_only() {
        let thread_flags = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        assert_eq!(
            decide(libc::SYS_clone, thread_flags),
            libc::SECCOMP_RET_ALLOW
        );
        assert_eq!(
            decide(libc::SYS_clone, libc::SIGCHLD as u64),
            libc::SECCOMP_RET_ALLOW
        );
        for flag in [
            libc::CLONE_NEWUSER,
            libc::CLONE_NEWNS,
            libc::CLONE_NEWPID,
            libc::CLONE_NEWNET,
            libc::CLONE_NEWCGROUP,
            libc::CLONE_NEWIPC,
            libc::CLONE_NEWUTS,
        ] {
            assert_eq!(
                decide(libc::SYS_clone, libc::SIGCHLD as u64 | flag as u64),
                errno(libc::EPERM)
            );
        }
    }

    /// Installs the real filter in a forked child and checks what the kernel does.
    #[test]
    fn installed_filter_behaves() {
        let filter = build_filter();
        // Codes the child reports: one bit per failed expectation.
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                // Child of a multithreaded test process: raw syscalls only.
                let mut bad = 0;
                if install(&filter).is_err() {
                    super::super::sys::exit(100);
                }
                let r = libc::syscall(libc::SYS_socket, libc::AF_INET, libc::SOCK_STREAM, 0);
                if !(r == -1 && super::super::sys::errno() == libc::EAFNOSUPPORT) {
                    bad |= 1;
                }
                let r = libc::syscall(libc::SYS_socket, libc::AF_UNIX, libc::SOCK_STREAM, 0);
                if r < 0 {
                    bad |= 2;
                }
                let r = libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER);
                if !(r == -1 && super::super::sys::errno() == libc::EPERM) {
                    bad |= 4;
                }
                let r = libc::syscall(libc::SYS_clone3, 0usize, 0usize);
                if !(r == -1 && super::super::sys::errno() == libc::ENOSYS) {
                    bad |= 8;
                }
                let r = libc::syscall(libc::SYS_ptrace, libc::PTRACE_TRACEME, 0, 0, 0);
                if !(r == -1 && super::super::sys::errno() == libc::EPERM) {
                    bad |= 16;
                }
                if libc::syscall(libc::SYS_getpid) <= 0 {
                    bad |= 32;
                }
                super::super::sys::exit(bad);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFEXITED(status), "child died: {status:#x}");
            assert_eq!(libc::WEXITSTATUS(status), 0, "failed checks bitmask");
        }
    }

    /// An x32 syscall kills the process with SIGSYS.
    #[test]
    fn installed_filter_kills_x32() {
        let filter = build_filter();
        unsafe {
            let pid = libc::fork();
            assert!(pid >= 0);
            if pid == 0 {
                if install(&filter).is_err() {
                    super::super::sys::exit(100);
                }
                libc::syscall(X32_SYSCALL_BIT as c_long | libc::SYS_getpid);
                super::super::sys::exit(0);
            }
            let mut status = 0;
            assert_eq!(libc::waitpid(pid, &mut status, 0), pid);
            assert!(libc::WIFSIGNALED(status), "status {status:#x}");
            assert_eq!(libc::WTERMSIG(status), libc::SIGSYS);
        }
    }
}
