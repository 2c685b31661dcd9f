//! Language profiles with `backend = "wasm"`: their `[wasm]` section, and the one place
//! where a run is sent to the wasm sandbox instead of the process sandbox.
//!
//! Three kinds of guest:
//! - **an interpreter with a boot script** (`boot = "python"`): CPython for WASI runs
//!   the same Python harness as the process backend, started by `harness/wasm_boot.py`;
//!   with `snapshot = true` the interpreter is pre-initialised once (start-up, imports,
//!   the harness compiled) and every run starts from that snapshot;
//! - **an interpreter for a source file** (`module` without `boot`, e.g. QuickJS): the
//!   submission is written to `source` in /work and run with the profile's `run` argv;
//! - **a compiled program** (no `module`): the profile's `[compile]` step builds a
//!   wasm32-wasi module inside the process sandbox, and that module is what runs.
//!
//! The time limit is fuel: `fuel` when the profile (or `--fuel`) gives it, else
//! `cpu_time_ms × fuel_per_ms`.

use crate::JudgeError;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Which sandbox runs a profile's programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// The native process sandbox (namespaces, seccomp, cgroups).
    #[default]
    Process,
    /// wasmtime, with fuel-metered deterministic limits.
    Wasm,
}

/// How an interpreter guest is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Boot {
    /// CPython: the Python harness, started through `harness/wasm_boot.py`.
    Python,
}

/// `[wasm]` of a profile, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WasmFile {
    /// The guest module; `{guests}` is the guest directory ([`guests_dir`]). Absent for
    /// compiled languages, whose `[compile]` artifact is the module.
    #[serde(default)]
    module: Option<String>,
    #[serde(default)]
    boot: Option<Boot>,
    #[serde(default)]
    snapshot: bool,
    /// For a source-file interpreter: the name the submission is written to in /work.
    #[serde(default)]
    source: Option<String>,
    /// Fuel per millisecond of the time limit (calibrated, see README).
    fuel_per_ms: u64,
    /// A fixed fuel budget per run, instead of one derived from the time limit.
    #[serde(default)]
    fuel: Option<u64>,
}

/// `[wasm]` of a profile, resolved.
#[derive(Debug, Clone)]
pub struct WasmProfile {
    /// The guest interpreter module, or None when the program is compiled to wasm.
    pub module: Option<PathBuf>,
    /// How an interpreter guest is started.
    pub boot: Option<Boot>,
    /// Whether runs start from a pre-initialised snapshot of the guest.
    pub snapshot: bool,
    /// File name of the submission in /work, for source-file interpreters.
    pub source: Option<String>,
    /// Fuel per millisecond of `cpu_time_ms`.
    pub fuel_per_ms: u64,
    /// A fixed budget per run that replaces `cpu_time_ms × fuel_per_ms`.
    pub fuel: Option<u64>,
}

impl WasmProfile {
    /// The fuel budget of a run with these limits.
    pub fn fuel_for(&self, limits: &crucible_core::Limits) -> u64 {
        self.fuel
            .unwrap_or_else(|| limits.cpu_time_ms.saturating_mul(self.fuel_per_ms))
    }
}

/// Where the fetched guest runtimes live: `$CRUCIBLE_WASM_GUESTS`, else `wasm/guests` in
/// Crucible's cache folder (`~/.cache/crucible` by default; what
/// `scripts/fetch-wasm-guests.sh` fills).
pub fn guests_dir() -> PathBuf {
    match std::env::var_os("CRUCIBLE_WASM_GUESTS") {
        Some(d) => PathBuf::from(d),
        None => crucible_sandbox::crucible_cache_root().join("wasm/guests"),
    }
}

/// `{guests}` in a profile path replaced by [`guests_dir`].
pub(crate) fn expand(s: &str) -> String {
    s.replace("{guests}", &guests_dir().to_string_lossy())
}

impl WasmFile {
    /// Resolves the section of profile `name`. A missing guest module makes the language
    /// unavailable (with the command that installs it), not the load fail.
    pub(crate) fn resolve(
        self,
        name: &str,
        origin: &Path,
        compiled: bool,
    ) -> Result<WasmProfile, JudgeError> {
        let bad = |message: String| JudgeError::Profile {
            path: origin.to_path_buf(),
            message,
        };
        if !cfg!(feature = "wasm") {
            return Err(JudgeError::Unavailable {
                name: name.to_string(),
                reason: "built without the `wasm` feature".into(),
            });
        }
        if self.fuel_per_ms == 0 {
            return Err(bad("`wasm.fuel_per_ms` must be positive".into()));
        }
        let module = match (&self.module, compiled) {
            (Some(m), false) => {
                let path = PathBuf::from(expand(m));
                if !path.is_file() {
                    return Err(JudgeError::Unavailable {
                        name: name.to_string(),
                        reason: format!(
                            "guest module {} is missing (run scripts/fetch-wasm-guests.sh)",
                            path.display()
                        ),
                    });
                }
                Some(path)
            }
            (None, true) => None,
            (Some(_), true) => {
                return Err(bad(
                    "`wasm.module` and `[compile]` exclude each other".into()
                ))
            }
            (None, false) => {
                return Err(bad(
                    "`wasm.module` is needed without a `[compile]` step".into()
                ))
            }
        };
        if module.is_some() && self.boot.is_none() && self.source.is_none() {
            return Err(bad(
                "an interpreter guest needs `wasm.boot` or `wasm.source`".into(),
            ));
        }
        if let Some(s) = &self.source {
            if s.is_empty() || s.contains('/') || s.starts_with('.') {
                return Err(bad(format!(
                    "`wasm.source` must be a plain file name, not {s:?}"
                )));
            }
        }
        Ok(WasmProfile {
            module,
            boot: self.boot,
            snapshot: self.snapshot,
            source: self.source,
            fuel_per_ms: self.fuel_per_ms,
            fuel: self.fuel,
        })
    }
}

#[cfg(feature = "wasm")]
pub(crate) use enabled::{dispatch, run_harness};

#[cfg(not(feature = "wasm"))]
/// Without the wasm feature every run goes to the process sandbox (wasm profiles are
/// unavailable then, so none reaches here).
pub(crate) fn dispatch(
    sandbox: &crucible_sandbox::ProcessSandbox,
    _profile: &crate::LanguageProfile,
    spec: &crucible_sandbox::RunSpec,
) -> crucible_core::RunReport {
    sandbox.run(spec)
}

#[cfg(not(feature = "wasm"))]
/// Without the wasm feature no wasm profile is available, so none reaches here.
pub(crate) fn run_harness(
    profile: &crate::LanguageProfile,
    _run: crate::profile::HarnessRun<'_>,
) -> crucible_core::RunReport {
    crucible_core::RunReport::sandbox_error(format!("{}: built without wasm", profile.name))
}

#[cfg(feature = "wasm")]
mod enabled {
    use super::{Boot, WasmProfile};
    use crate::profile::{HarnessMode, HarnessRun, HARNESS_FILE, PYTHON_HARNESS};
    use crate::LanguageProfile;
    use crucible_core::RunReport;
    use crucible_sandbox::{
        ProcessSandbox, RunSpec, SnapshotSpec, WasmConfig, WasmModule, WasmRunSpec, WasmSandbox,
    };
    use std::os::fd::OwnedFd;
    use std::sync::{Arc, OnceLock};

    /// The boot script for CPython guests.
    const WASM_BOOT: &str = include_str!("../harness/wasm_boot.py");
    const BOOT_FILE: &str = ".crucible_boot.py";

    /// The process-wide wasm sandbox, made on first use: one engine and module cache
    /// serve every judge, and processes that never run wasm never pay for it.
    pub(crate) fn backend() -> Result<&'static WasmSandbox, String> {
        static SANDBOX: OnceLock<Result<WasmSandbox, String>> = OnceLock::new();
        SANDBOX
            .get_or_init(|| WasmSandbox::new(WasmConfig::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Runs `spec` in the sandbox the profile names: the process sandbox, or for a wasm
    /// profile its compiled module (`spec.argv[0]`, an artifact in the compile cache).
    pub(crate) fn dispatch(
        sandbox: &ProcessSandbox,
        profile: &LanguageProfile,
        spec: &RunSpec,
    ) -> RunReport {
        let Some(w) = &profile.wasm else {
            return sandbox.run(spec);
        };
        let b = match backend() {
            Ok(b) => b,
            Err(e) => return RunReport::sandbox_error(format!("wasm backend: {e}")),
        };
        // The guest sees a plain name instead of the cache's host path.
        let Some(artifact) = spec.argv.first() else {
            return RunReport::sandbox_error("no compiled module to run");
        };
        let bytes = match std::fs::read(artifact) {
            Ok(bytes) => bytes,
            Err(e) => return RunReport::sandbox_error(format!("{artifact}: {e}")),
        };
        let module = b.load_bytes(&profile.name, &bytes, false);
        let mut argv = spec.argv.clone();
        argv[0] = "main.wasm".into();
        let guest = Guest {
            argv,
            env: spec.env.clone(),
            files: spec.files.clone(),
            stdin: &spec.stdin,
            limits: spec.limits,
            channel: None,
        };
        run(b, w, module.map_err(|e| e.to_string()), guest)
    }

    /// Runs the Python harness (or, for a source interpreter such as QuickJS, the
    /// program itself, stdio only) in a wasm guest of the profile's interpreter.
    pub(crate) fn run_harness(profile: &LanguageProfile, harness: HarnessRun<'_>) -> RunReport {
        let Some(w) = &profile.wasm else {
            return RunReport::sandbox_error(format!("{} is not a wasm language", profile.name));
        };
        let b = match backend() {
            Ok(b) => b,
            Err(e) => return RunReport::sandbox_error(format!("wasm backend: {e}")),
        };
        let Some(path) = &w.module else {
            return RunReport::sandbox_error(format!("{} has no interpreter", profile.name));
        };
        let (argv, files, module) = match (w.boot, &w.source) {
            (Some(Boot::Python), _) => {
                let mut files = harness.files();
                files.push((BOOT_FILE.into(), WASM_BOOT.as_bytes().to_vec()));
                let argv = vec![
                    "python".to_string(),
                    format!("/work/{BOOT_FILE}"),
                    "run".into(),
                    format!("/work/{HARNESS_FILE}"),
                    harness.mode.arg().into(),
                ];
                (argv, files, interpreter(b, profile, w, path))
            }
            (None, Some(source)) if harness.mode == HarnessMode::Stdio => {
                let files = vec![(source.clone(), harness.program.as_bytes().to_vec())];
                let argv = profile.argv(&format!("/work/{source}"), &[]);
                (argv, files, b.load_file(path).map_err(|e| e.to_string()))
            }
            _ => {
                return RunReport::sandbox_error(format!(
                    "{} runs stdio tests only (call and assert tests need Python)",
                    profile.name
                ))
            }
        };
        let guest = Guest {
            argv,
            env: profile.env.clone(),
            files,
            stdin: harness.stdin,
            limits: harness.limits,
            channel: harness.channel,
        };
        run(b, w, module, guest)
    }

    /// A guest to start, with everything its module needs.
    struct Guest<'a> {
        argv: Vec<String>,
        env: Vec<(String, String)>,
        files: Vec<(String, Vec<u8>)>,
        stdin: &'a [u8],
        limits: crucible_core::Limits,
        channel: Option<OwnedFd>,
    }

    /// The guest interpreter, pre-initialised when the profile asks for it. A snapshot
    /// that cannot be made is logged and the plain module used instead: slower, same
    /// verdicts.
    fn interpreter(
        b: &WasmSandbox,
        profile: &LanguageProfile,
        w: &WasmProfile,
        path: &std::path::Path,
    ) -> Result<Arc<WasmModule>, String> {
        if w.snapshot && w.boot == Some(Boot::Python) {
            let spec = SnapshotSpec {
                argv: vec![
                    "python".into(),
                    format!("/work/{BOOT_FILE}"),
                    "snapshot".into(),
                    // Compiled under the name runs give it, so tracebacks read the same.
                    format!("/work/{HARNESS_FILE}"),
                ],
                env: profile.env.clone(),
                files: vec![
                    (BOOT_FILE.into(), WASM_BOOT.as_bytes().to_vec()),
                    (HARNESS_FILE.into(), PYTHON_HARNESS.as_bytes().to_vec()),
                ],
                fuel_per_ms: w.fuel_per_ms,
            };
            match b.snapshot(path, &spec) {
                Ok(m) => return Ok(m),
                Err(e) => {
                    static WARNED: OnceLock<()> = OnceLock::new();
                    WARNED.get_or_init(|| {
                        tracing::warn!(language = %profile.name, error = %e, "no snapshot; using plain start-up");
                    });
                }
            }
        }
        b.load_file(path).map_err(|e| e.to_string())
    }

    fn run(
        b: &WasmSandbox,
        w: &WasmProfile,
        module: Result<Arc<WasmModule>, String>,
        guest: Guest<'_>,
    ) -> RunReport {
        let module = match module {
            Ok(m) => m,
            Err(e) => return RunReport::sandbox_error(format!("wasm module: {e}")),
        };
        let fuel = w.fuel_for(&guest.limits);
        // The wall clock is only a safety net: it must leave the fuel budget room to run
        // out first even on a heavily loaded machine (a tenth of a core), or a verdict
        // would depend on load again.
        let mut limits = guest.limits;
        limits.wall_time_ms = limits.wall_time_ms.max(
            (fuel / w.fuel_per_ms)
                .saturating_mul(10)
                .saturating_add(5_000),
        );
        let spec = WasmRunSpec {
            module: &module,
            argv: guest.argv,
            env: guest.env,
            files: guest.files,
            stdin: guest.stdin.to_vec(),
            limits,
            fuel,
            fuel_per_ms: w.fuel_per_ms,
        };
        match guest.channel {
            Some(c) => b.run_with_channel(&spec, c),
            None => b.run(&spec),
        }
    }
}
