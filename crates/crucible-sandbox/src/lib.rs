//! Crucible's sandbox: run a program under limits and isolation, and report exactly what
//! happened.
//!
//! [`ProcessSandbox`] is the native backend: fresh user, pid, net, mount, ipc and uts
//! namespaces; a minimal read-only root holding only the requested host paths, a tmpfs
//! work dir at `/work`, a fresh `/proc` and a minimal `/dev`; rlimits; a memory and pids
//! cgroup per run (v2, else v1, else none); no_new_privs and a seccomp filter. The whole
//! process tree is killed and reaped at the limit, and nothing outlives a run.
//!
//! [`ForkServer`] runs interpreted programs (Python) with the same isolation at the cost
//! of a fork: per worker slot, a warm interpreter inside such a sandbox (the zygote)
//! forks one child per execution, which gets a fresh IPC namespace and tmpfs work dir,
//! the program's uid with no capabilities, rlimits, the program seccomp filter and a
//! per-execution cgroup, and everything it leaves is killed at its end.
//!
//! [`WasmSandbox`] (feature `wasm`, on by default) runs WebAssembly modules in wasmtime
//! with fuel-metered, deterministic limits; see [`wasm`].
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
#[cfg(feature = "wasm")]
pub mod wasm;

pub use process::{
    CgroupMode, ExecRequest, ForkServer, ProcessSandbox, RunSpec, SandboxConfig, SandboxError,
    ZygoteSpec, PYTHON_ZYGOTE,
};
#[cfg(feature = "wasm")]
pub use wasm::{SnapshotSpec, WasmConfig, WasmError, WasmModule, WasmRunSpec, WasmSandbox};

/// Crucible's cache folder: `$CRUCIBLE_CACHE`, else `$XDG_CACHE_HOME/crucible`, else
/// `~/.cache/crucible`.
pub fn crucible_cache_root() -> std::path::PathBuf {
    match std::env::var_os("CRUCIBLE_CACHE") {
        Some(c) => std::path::PathBuf::from(c),
        None => match std::env::var_os("XDG_CACHE_HOME") {
            Some(x) => std::path::PathBuf::from(x).join("crucible"),
            None => std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/crucible"),
        },
    }
}
