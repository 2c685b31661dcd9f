//! Crucible's sandbox: run a program under limits and isolation, and report exactly what
//! happened.
//!
//! [`ProcessSandbox`] is the native backend: fresh user, pid, net, mount, ipc and uts
//! namespaces; a minimal read-only root holding only the requested host paths, a tmpfs
//! work dir at `/work`, a fresh `/proc` and a minimal `/dev`; rlimits; a memory and pids
//! cgroup per run (v2, else v1, else none); no_new_privs and a seccomp filter. The whole
//! process tree is killed and reaped at the limit, and nothing outlives a run.
//!
//! ```no_run
//! use crucible_sandbox::{ProcessSandbox, RunSpec, SandboxConfig};
//! let sandbox = ProcessSandbox::new(SandboxConfig::default())?;
//! let report = sandbox.run(&RunSpec {
//!     argv: vec!["/usr/bin/python3".into(), "-S".into(), "-c".into(), "print(1 + 1)".into()],
//!     env: vec![("PATH".into(), "/usr/bin".into())],
//!     files: vec![],
//!     stdin: vec![],
//!     limits: crucible_core::Limits::default(),
//!     mounts: ["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"].map(Into::into).to_vec(),
//! });
//! assert_eq!(report.stdout, "2\n");
//! # Ok::<(), crucible_sandbox::SandboxError>(())
//! ```

mod process;

pub use process::{CgroupMode, ProcessSandbox, RunSpec, SandboxConfig, SandboxError};
