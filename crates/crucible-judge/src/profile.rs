use crate::JudgeError;
use crucible_core::Limits;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The profiles shipped in sandboxes/, built into the binary so it runs from anywhere.
const BUILTIN: &[(&str, &str)] = &[
    (
        "sandboxes/python.toml",
        include_str!("../../../sandboxes/python.toml"),
    ),
    (
        "sandboxes/c.toml",
        include_str!("../../../sandboxes/c.toml"),
    ),
    (
        "sandboxes/cpp.toml",
        include_str!("../../../sandboxes/cpp.toml"),
    ),
    (
        "sandboxes/rust.toml",
        include_str!("../../../sandboxes/rust.toml"),
    ),
    (
        "sandboxes/javascript.toml",
        include_str!("../../../sandboxes/javascript.toml"),
    ),
    (
        "sandboxes/python-wasm.toml",
        include_str!("../../../sandboxes/python-wasm.toml"),
    ),
    (
        "sandboxes/javascript-wasm.toml",
        include_str!("../../../sandboxes/javascript-wasm.toml"),
    ),
    (
        "sandboxes/c-wasm.toml",
        include_str!("../../../sandboxes/c-wasm.toml"),
    ),
    (
        "sandboxes/cpp-wasm.toml",
        include_str!("../../../sandboxes/cpp-wasm.toml"),
    ),
];

/// The in-sandbox harness for Python programs: the channel codec, then the program's
/// side (stdio runs, and serving the checker's calls).
pub(crate) const PYTHON_HARNESS: &str = concat!(
    include_str!("../harness/channel.py"),
    include_str!("../harness/python.py")
);

/// The program's file in the work dir, and the harness's, on every backend.
pub(crate) const SOLUTION_FILE: &str = "solution.py";
pub(crate) const HARNESS_FILE: &str = ".crucible_harness.py";

/// What the Python harness does with the program (harness/python.py's modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HarnessMode {
    /// Run it as `__main__` on stdin (stdio tests, `crucible run`).
    Stdio,
    /// Load it and answer the checker's calls over a channel.
    Serve,
}

impl HarnessMode {
    /// The harness's argument for this mode.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            HarnessMode::Stdio => "stdio",
            HarnessMode::Serve => "serve",
        }
    }
}

/// One run of the harness over a program: the typed request each backend turns into
/// its own (a fork-server execution, a fresh sandbox's argv, a wasm guest's).
pub(crate) struct HarnessRun<'a> {
    pub mode: HarnessMode,
    pub program: &'a str,
    pub stdin: &'a [u8],
    pub limits: crucible_core::Limits,
    /// For [`HarnessMode::Serve`]: the program's end of the checker's socket.
    pub channel: Option<std::os::fd::OwnedFd>,
}

impl HarnessRun<'_> {
    /// The work dir's files: the program and the harness.
    pub(crate) fn files(&self) -> Vec<(String, Vec<u8>)> {
        vec![
            (SOLUTION_FILE.to_string(), self.program.as_bytes().to_vec()),
            (HARNESS_FILE.to_string(), PYTHON_HARNESS.as_bytes().to_vec()),
        ]
    }
}

/// The checker: the channel codec, then the process that holds a problem's call and
/// assert tests and judges the program's answers (see harness/checker.py).
pub(crate) const PYTHON_CHECKER: &str = concat!(
    include_str!("../harness/channel.py"),
    include_str!("../harness/checker.py")
);

/// A language profile as written in sandboxes/NAME.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: String,
    display: String,
    interpreters: Vec<String>,
    #[serde(default)]
    probe: Vec<String>,
    run: Vec<String>,
    #[serde(default)]
    mounts: Vec<String>,
    #[serde(default)]
    memory_errors: Vec<String>,
    /// Run programs through a fork server (Python only).
    #[serde(default)]
    fork_server: bool,
    /// Modules the fork server's zygote imports ahead.
    #[serde(default)]
    preload: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    limits: Limits,
    /// For compiled languages: how a submission is compiled once before its tests.
    #[serde(default)]
    compile: Option<crate::compile::CompileFile>,
    /// Which sandbox runs the programs (`process`, the default, or `wasm`).
    #[serde(default)]
    backend: crate::wasm::Backend,
    /// The wasm guest and fuel settings, for `backend = "wasm"`.
    #[serde(default)]
    wasm: Option<crate::wasm::WasmFile>,
}

/// A language profile resolved against this machine: a real interpreter, its mounts.
#[derive(Debug, Clone)]
pub struct LanguageProfile {
    /// Short name used to select it (`python`).
    pub name: String,
    /// Human-readable name and version.
    pub display: String,
    /// Absolute path of the real interpreter.
    pub interpreter: PathBuf,
    /// Interpreter version as probed, if the profile probes one.
    pub version: Option<String>,
    /// Host paths mounted read-only into the sandbox.
    pub mounts: Vec<PathBuf>,
    /// The whole environment of a run.
    pub env: Vec<(String, String)>,
    /// Exception names meaning out-of-memory.
    pub memory_errors: Vec<String>,
    /// Default limits for a run.
    pub limits: Limits,
    /// For compiled languages, the resolved compile step (`[compile]` in the profile).
    pub compile: Option<crate::compile::Toolchain>,
    /// Which sandbox runs the programs.
    pub backend: crate::wasm::Backend,
    /// For `backend = "wasm"`: the guest and its fuel settings.
    pub wasm: Option<crate::wasm::WasmProfile>,
    /// Whether runs go through a fork server (a warm interpreter forking one child per
    /// run) unless the judge is told otherwise. Python profiles on the process backend
    /// only: the zygote and the harness are Python.
    pub fork_server: bool,
    /// Modules the fork server's zygote imports before it forks.
    pub preload: Vec<String>,
    run: Vec<String>,
}

impl LanguageProfile {
    /// The argv that runs `file` (a path inside the sandbox) followed by `args`.
    pub fn argv(&self, file: &str, args: &[&str]) -> Vec<String> {
        let interpreter = self.interpreter.to_string_lossy();
        let mut argv: Vec<String> = self
            .run
            .iter()
            .map(|a| {
                a.replace("{interpreter}", &interpreter)
                    .replace("{file}", file)
            })
            .collect();
        argv.extend(args.iter().map(|s| s.to_string()));
        argv
    }

    fn resolve(file: ProfileFile, origin: &Path) -> Result<LanguageProfile, JudgeError> {
        let err = |message: String| JudgeError::Profile {
            path: origin.to_path_buf(),
            message,
        };
        if file.run.is_empty() {
            return Err(err("`run` is empty".into()));
        }
        let mut tried = Vec::new();
        let mut found = None;
        let probes = crucible_sandbox::crucible_cache_root().join("probes");
        for candidate in &file.interpreters {
            match real_interpreter(&crate::wasm::expand(candidate), &file.probe, &probes) {
                Ok(r) => {
                    found = Some(r);
                    break;
                }
                Err(why) => tried.push(format!("{candidate}: {why}")),
            }
        }
        let Some(mut probed) = found else {
            return Err(JudgeError::Unavailable {
                name: file.name,
                reason: format!("no interpreter found ({})", tried.join("; ")),
            });
        };
        let toolchain = match &file.compile {
            Some(c) => Some(crate::compile::Toolchain::resolve(
                &file.name,
                c,
                &file.interpreters,
                &probed.executable,
                &file.env,
                origin,
            )?),
            None => None,
        };
        // A compiled program runs without the toolchain's main program: the compiler is
        // what the profile stands for then.
        let uses_interpreter = file.run.iter().any(|a| a.contains("{interpreter}"));
        if let Some(t) = &toolchain {
            if !uses_interpreter {
                probed.executable = t.compiler.clone();
            }
            probed.version = probed.version.or_else(|| Some(t.version.clone()));
        }
        let mut mounts: Vec<PathBuf> = Vec::new();
        for m in &file.mounts {
            let path = PathBuf::from(m.replace("{prefix}", &probed.prefix.to_string_lossy()));
            // Optional system paths (e.g. /lib64) may not exist on every distribution.
            if path.exists() && !mounts.iter().any(|p| path.starts_with(p)) {
                mounts.push(path);
            }
        }
        // The interpreter itself must be visible, whatever the profile lists.
        if uses_interpreter && !mounts.iter().any(|p| probed.executable.starts_with(p)) {
            return Err(err(format!(
                "interpreter {} lies outside every mount",
                probed.executable.display()
            )));
        }
        let display = match &probed.version {
            Some(v) => format!("{} {v}", file.display),
            None => file.display.clone(),
        };
        let wasm = match (file.backend, file.wasm) {
            (crate::wasm::Backend::Wasm, Some(w)) => {
                Some(w.resolve(&file.name, origin, toolchain.is_some())?)
            }
            (crate::wasm::Backend::Process, None) => None,
            _ => return Err(err("`backend = \"wasm\"` and `[wasm]` go together".into())),
        };
        Ok(LanguageProfile {
            name: file.name,
            display,
            interpreter: probed.executable,
            version: probed.version,
            mounts,
            env: file.env.into_iter().collect(),
            memory_errors: file.memory_errors,
            limits: file.limits,
            compile: toolchain,
            backend: file.backend,
            wasm,
            fork_server: file.fork_server,
            preload: file.preload,
            run: file.run,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Probed {
    executable: PathBuf,
    prefix: PathBuf,
    version: Option<String>,
}

/// Finds the real binary behind `candidate` (a path or a name on PATH). A script (such as
/// a pyenv shim) is asked, through `probe`, which binary it really runs.
///
/// The answer for a binary (not a script, whose choice may change from run to run) is
/// kept in the folder `cache`, keyed by the binary's identity, the probe and the PYTHON*
/// environment: otherwise every process start pays for starting the interpreter once
/// (10-25 ms for Python).
fn real_interpreter(candidate: &str, probe: &[String], cache: &Path) -> Result<Probed, String> {
    let path = if candidate.contains('/') {
        PathBuf::from(candidate)
    } else {
        which(candidate).ok_or_else(|| "not on PATH".to_string())?
    };
    let path = std::fs::canonicalize(&path).map_err(|e| e.to_string())?;
    if probe.is_empty() {
        let prefix = path
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        return Ok(Probed {
            executable: path,
            prefix,
            version: None,
        });
    }
    let cached = probe_key(&path, probe).map(|key| cache.join(format!("{key}.json")));
    if let Some(hit) = cached.as_deref().and_then(read_probe) {
        return Ok(hit);
    }
    let started = std::time::Instant::now();
    let out = Command::new(&path)
        .args(probe)
        .output()
        .map_err(|e| format!("cannot run: {e}"))?;
    if !out.status.success() {
        return Err(format!("probe failed with {}", out.status));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let (Some(exe), Some(prefix)) = (lines.next(), lines.next()) else {
        return Err("probe printed less than two lines".into());
    };
    let executable = std::fs::canonicalize(exe).map_err(|e| format!("{exe}: {e}"))?;
    let probed = Probed {
        executable,
        prefix: PathBuf::from(prefix),
        version: lines.next().map(str::to_string),
    };
    tracing::debug!(interpreter = %path.display(), ms = started.elapsed().as_millis() as u64, "probed");
    if let Some(file) = &cached {
        if let Err(e) = write_probe(file, &probed) {
            tracing::debug!(file = %file.display(), error = %e, "probe result not cached");
        }
    }
    Ok(probed)
}

/// The cache key of probing the binary at `path` with `probe`; None for a script.
fn probe_key(path: &Path, probe: &[String]) -> Option<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;
    let mut magic = [0u8; 4];
    std::fs::File::open(path)
        .ok()?
        .read_exact(&mut magic)
        .ok()?;
    if &magic != b"\x7fELF" {
        return None;
    }
    let m = std::fs::metadata(path).ok()?;
    let mut h = Sha256::new();
    h.update(path.as_os_str().as_encoded_bytes());
    for n in [m.dev(), m.ino(), m.size()] {
        h.update(n.to_le_bytes());
    }
    h.update(m.mtime().to_le_bytes());
    h.update(m.mtime_nsec().to_le_bytes());
    for arg in probe {
        h.update(b"\0");
        h.update(arg.as_bytes());
    }
    let mut env: Vec<_> = std::env::vars_os()
        .filter(|(k, _)| k.as_encoded_bytes().starts_with(b"PYTHON"))
        .collect();
    env.sort();
    for (k, v) in env {
        h.update(b"\0");
        h.update(k.as_encoded_bytes());
        h.update(b"=");
        h.update(v.as_encoded_bytes());
    }
    Some(format!("{:x}", h.finalize()))
}

/// A cached probe result whose interpreter still exists.
fn read_probe(file: &Path) -> Option<Probed> {
    let probed: Probed = serde_json::from_slice(&std::fs::read(file).ok()?).ok()?;
    probed.executable.is_file().then_some(probed)
}

/// Writes a probe result atomically (a reader sees the old file or the whole new one).
fn write_probe(file: &Path, probed: &Probed) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(crate::compile::temp_name("probe"));
    std::fs::write(&tmp, serde_json::to_vec(probed)?)?;
    std::fs::rename(&tmp, file).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The language profiles available to a judge, by name. A profile's toolchain is probed
/// (`gcc --version`, `rustc -vV`, ...) the first time it is asked for, so a process that
/// judges Python never waits for the C, Rust or wasm probes.
#[derive(Debug, Clone, Default)]
pub struct Profiles {
    entries: BTreeMap<String, Entry>,
    /// The fuel budget `set_wasm_fuel` gave, applied to wasm profiles as they resolve.
    wasm_fuel: Option<u64>,
}

#[derive(Debug, Clone)]
struct Entry {
    origin: PathBuf,
    file: ProfileFile,
    resolved: OnceLock<Result<LanguageProfile, Failure>>,
}

/// Why a profile cannot be used, kept so that every later lookup says the same.
#[derive(Debug, Clone)]
enum Failure {
    Unavailable(String),
    Profile(PathBuf, String),
}

impl Entry {
    fn resolved(&self, fuel: Option<u64>) -> &Result<LanguageProfile, Failure> {
        self.resolved.get_or_init(|| {
            match LanguageProfile::resolve(self.file.clone(), &self.origin) {
                Ok(mut p) => {
                    if let Some(w) = p.wasm.as_mut() {
                        w.fuel = fuel;
                    }
                    Ok(p)
                }
                Err(JudgeError::Unavailable { reason, .. }) => {
                    tracing::warn!(language = %self.file.name, %reason, "language unavailable");
                    Err(Failure::Unavailable(reason))
                }
                Err(JudgeError::Profile { path, message }) => Err(Failure::Profile(path, message)),
                Err(e) => Err(Failure::Profile(self.origin.clone(), e.to_string())),
            }
        })
    }
}

impl Profiles {
    /// The profiles built into the binary, overridden by any `*.toml` in `dir` (when given)
    /// with the same name. Returns an error for a file that cannot be read or parsed; a
    /// profile whose toolchain is missing is reported as unavailable when it is used.
    pub fn load(dir: Option<&Path>) -> Result<Profiles, JudgeError> {
        let mut files: BTreeMap<String, (PathBuf, ProfileFile)> = BTreeMap::new();
        for (origin, text) in BUILTIN {
            let f = parse(Path::new(origin), text)?;
            files.insert(f.name.clone(), (PathBuf::from(origin), f));
        }
        if let Some(dir) = dir {
            let entries = std::fs::read_dir(dir).map_err(|source| JudgeError::Io {
                path: dir.to_path_buf(),
                source,
            })?;
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let text = std::fs::read_to_string(&path).map_err(|source| JudgeError::Io {
                        path: path.clone(),
                        source,
                    })?;
                    let f = parse(&path, &text)?;
                    files.insert(f.name.clone(), (path, f));
                }
            }
        }
        let entries = files
            .into_iter()
            .map(|(name, (origin, file))| {
                let resolved = OnceLock::new();
                (
                    name,
                    Entry {
                        origin,
                        file,
                        resolved,
                    },
                )
            })
            .collect();
        Ok(Profiles {
            entries,
            wasm_fuel: None,
        })
    }

    /// Probes every profile not probed yet, side by side, so that listing them all waits
    /// for the slowest toolchain, not the sum.
    fn resolve_all(&self) {
        let fuel = self.wasm_fuel;
        std::thread::scope(|scope| {
            for e in self.entries.values().filter(|e| e.resolved.get().is_none()) {
                scope.spawn(move || {
                    e.resolved(fuel);
                });
            }
        });
    }

    /// The profile called `name`, or an error that lists what is available and says why
    /// a known language is unavailable.
    pub fn get(&self, name: &str) -> Result<&LanguageProfile, JudgeError> {
        let Some(entry) = self.entries.get(name) else {
            return Err(JudgeError::UnknownLanguage {
                name: name.to_string(),
                available: self.names().join(", "),
            });
        };
        match entry.resolved(self.wasm_fuel) {
            Ok(p) => Ok(p),
            Err(Failure::Unavailable(reason)) => Err(JudgeError::Unavailable {
                name: name.to_string(),
                reason: reason.clone(),
            }),
            Err(Failure::Profile(path, message)) => Err(JudgeError::Profile {
                path: path.clone(),
                message: message.clone(),
            }),
        }
    }

    /// Names of every profile loaded, usable or not, sorted; probes nothing.
    pub fn declared_names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Names of the usable profiles, sorted (probing every toolchain not probed yet).
    pub fn names(&self) -> Vec<String> {
        self.iter().map(|p| p.name.clone()).collect()
    }

    /// Every usable profile (probing every toolchain not probed yet).
    pub fn iter(&self) -> impl Iterator<Item = &LanguageProfile> {
        self.resolve_all();
        self.entries
            .values()
            .filter_map(|e| e.resolved.get().and_then(|r| r.as_ref().ok()))
    }

    /// Gives every wasm profile a fixed fuel budget per run (`--fuel`), or back the one
    /// derived from its time limit (`None`).
    pub fn set_wasm_fuel(&mut self, fuel: Option<u64>) {
        self.wasm_fuel = fuel;
        for e in self.entries.values_mut() {
            if let Some(Ok(p)) = e.resolved.get_mut() {
                if let Some(w) = p.wasm.as_mut() {
                    w.fuel = fuel;
                }
            }
        }
    }
}

fn parse(path: &Path, text: &str) -> Result<ProfileFile, JudgeError> {
    toml::from_str(text).map_err(|e| JudgeError::Profile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_python_resolves_to_a_real_binary() {
        let p = Profiles::load(None).unwrap();
        let py = p.get("python").unwrap();
        let head = std::fs::read(&py.interpreter).unwrap();
        assert!(
            head.starts_with(b"\x7fELF"),
            "not a binary: {:?}",
            py.interpreter
        );
        assert!(py
            .env
            .iter()
            .any(|(k, v)| k == "PYTHONHASHSEED" && v == "0"));
        assert!(py.mounts.iter().any(|m| py.interpreter.starts_with(m)));
        assert!(py.fork_server, "python uses the fork server by default");
        assert!(py.preload.iter().any(|m| m == "collections"));
        let argv = py.argv("/work/x.py", &["a"]);
        assert_eq!(argv[0], py.interpreter.to_string_lossy());
        assert_eq!(argv.last().unwrap(), "a");
    }

    #[test]
    fn unknown_language_lists_available() {
        let p = Profiles::load(None).unwrap();
        let e = p.get("cobol").unwrap_err().to_string();
        assert!(e.contains("cobol") && e.contains("python"), "{e}");
    }

    #[test]
    fn toolchains_are_probed_on_first_use_and_failures_repeat() {
        // A profile whose interpreter is missing and one whose `run` is empty: loading
        // succeeds (nothing is probed), and each says what is wrong when asked for.
        let dir = tempfile::tempdir().unwrap();
        let python = include_str!("../../../sandboxes/python.toml");
        let missing = python
            .replace("name = \"python\"", "name = \"py-missing\"")
            .replace(
                "[\"/usr/bin/python3\", \"python3\"]",
                "[\"/nonexistent/python9\"]",
            );
        std::fs::write(dir.path().join("missing.toml"), missing).unwrap();
        let empty_run = python
            .replace("name = \"python\"", "name = \"py-norun\"")
            .replace(
                "run = [\"{interpreter}\", \"-s\", \"-P\", \"{file}\"]",
                "run = []",
            );
        std::fs::write(dir.path().join("norun.toml"), empty_run).unwrap();
        let p = Profiles::load(Some(dir.path())).unwrap();
        assert!(p.entries.values().all(|e| e.resolved.get().is_none()));
        assert!(p.get("python").is_ok());
        let resolved = p
            .entries
            .values()
            .filter(|e| e.resolved.get().is_some())
            .count();
        assert_eq!(resolved, 1, "only python was probed");
        for _ in 0..2 {
            let e = p.get("py-missing").unwrap_err();
            assert!(matches!(e, JudgeError::Unavailable { .. }), "{e}");
            assert!(e.to_string().contains("/nonexistent/python9"), "{e}");
            let e = p.get("py-norun").unwrap_err().to_string();
            assert!(
                e.contains("norun.toml") && e.contains("`run` is empty"),
                "{e}"
            );
        }
        assert!(!p.names().contains(&"py-missing".to_string()));
    }

    #[test]
    fn shim_script_is_resolved() {
        // A shim like pyenv's: a shell script that execs the real interpreter.
        let dir = tempfile::tempdir().unwrap();
        let shim = dir.path().join("python3");
        std::fs::write(&shim, "#!/bin/sh\nexec /usr/bin/python3 \"$@\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let probe = vec![
            "-c".to_string(),
            "import sys; print(sys.executable); print(sys.base_prefix)".to_string(),
        ];
        let cache = dir.path().join("probes");
        let r = real_interpreter(shim.to_str().unwrap(), &probe, &cache).unwrap();
        assert_ne!(r.executable, shim);
        assert!(std::fs::read(&r.executable)
            .unwrap()
            .starts_with(b"\x7fELF"));
        // A script may pick another interpreter next time: its answer is not kept.
        assert!(!cache.exists(), "nothing cached for a script");
    }

    #[test]
    fn probes_of_a_binary_are_cached_until_it_changes() {
        let Ok(real) = std::fs::canonicalize("/usr/bin/python3") else {
            eprintln!("skipped: no /usr/bin/python3");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("probes");
        // A copy of the interpreter, so that its identity can be changed here.
        let bin = dir.path().join("python3");
        std::fs::copy(&real, &bin).unwrap();
        // Another test thread forking while the copy was open for writing can leave the
        // copy briefly "busy" to exec.
        let probe_copy = |bin: &Path, probe: &[String], cache: &Path| {
            for _ in 0..20 {
                match real_interpreter(bin.to_str().unwrap(), probe, cache) {
                    Err(e) if e.contains("Text file busy") => {
                        std::thread::sleep(std::time::Duration::from_millis(50))
                    }
                    r => return r.unwrap(),
                }
            }
            panic!("{} stayed busy", bin.display());
        };
        let probe = vec![
            "-c".to_string(),
            "import sys; print(sys.executable); print(sys.base_prefix); print(1)".to_string(),
        ];
        let first = probe_copy(&bin, &probe, &cache);
        assert_eq!(first.version.as_deref(), Some("1"));
        let files: Vec<_> = std::fs::read_dir(&cache).unwrap().collect();
        assert_eq!(files.len(), 1, "one answer kept");
        let file = files[0].as_ref().unwrap().path();
        // Proof that the next answer comes from the cache: edit the kept answer.
        let mut kept: Probed = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(kept, first);
        kept.version = Some("edited".into());
        std::fs::write(&file, serde_json::to_vec(&kept).unwrap()).unwrap();
        let again = probe_copy(&bin, &probe, &cache);
        assert_eq!(again.version.as_deref(), Some("edited"));
        // Another probe, or the binary changed, asks the interpreter again.
        let mut other = probe.clone();
        other[1] = other[1].replace("print(1)", "print(2)");
        let r = probe_copy(&bin, &other, &cache);
        assert_eq!(r.version.as_deref(), Some("2"));
        std::fs::File::options()
            .write(true)
            .open(&bin)
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        let r = probe_copy(&bin, &probe, &cache);
        assert_eq!(r.version.as_deref(), Some("1"));
        // A kept answer whose interpreter is gone is not used.
        std::fs::write(
            &file,
            serde_json::to_vec(&Probed {
                executable: dir.path().join("gone"),
                ..kept
            })
            .unwrap(),
        )
        .unwrap();
        assert!(read_probe(&file).is_none());
    }

    #[test]
    fn bad_profile_names_the_file() {
        let e = parse(Path::new("sandboxes/x.toml"), "name = 1").unwrap_err();
        assert!(e.to_string().contains("sandboxes/x.toml"), "{e}");
    }
}
