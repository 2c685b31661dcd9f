//! Compiled languages: a profile's `[compile]` section resolved against this machine, the
//! compiler run inside the sandbox, and the content-addressed compile cache.
//!
//! A submission is compiled once; every test then runs the one artifact, bind-mounted
//! read-only from the cache into each test's sandbox. The cache key covers the language,
//! the toolchain's version, the compile command (its flags) and the source, so identical
//! samples (common in RL, where a policy repeats itself) compile once. Lookups are
//! single-flight: many identical submissions arriving together wait for one compile.

use crate::JudgeError;
use crucible_core::{base64_decode, Limits, RunReport, RunStatus};
use crucible_sandbox::{ProcessSandbox, RunSpec};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Longest compiler message kept in a compile_error (the first errors are at the top).
pub(crate) const COMPILE_MESSAGE_MAX: usize = 2000;
/// The shell that wraps compilers which leave an artifact, and the encoder it uses to
/// send the artifact back on stdout (the sandbox returns stdout as text).
const SHELL: &str = "/bin/sh";
const BASE64: &str = "/usr/bin/base64";
/// Runs the compiler with its stdout folded into stderr (so stdout carries only the
/// artifact), keeps its exit status, then prints the artifact (named by `$0`) as base64.
const WRAPPER: &str =
    "artifact=\"$0\"; \"$@\" >&2 || exit; exec /usr/bin/base64 -w 0 \"$artifact\"";
/// Version of the on-disk entry format; part of every key.
const CACHE_FORMAT: &str = "crucible-compile-v1";
/// Default bound on a private cache's artifacts, in bytes.
const DEFAULT_CACHE_BYTES: u64 = 1 << 30;
/// Most entries kept in a cache's in-memory index (compile errors cost memory, not disk).
const MAX_INDEXED: usize = 65_536;

/// The `[compile]` section of a language profile, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CompileFile {
    /// File name the submission is written to in /work.
    source: String,
    /// File name the compiler leaves in /work; absent when the step only checks the
    /// source (JavaScript), which then runs as it is.
    #[serde(default)]
    artifact: Option<String>,
    /// The compiler's argv: `{compiler}`, `{source}`, `{artifact}`, `{sysroot}`.
    command: Vec<String>,
    /// Arguments that make the compiler print its version on its first line.
    #[serde(default = "default_version_probe")]
    version: Vec<String>,
    /// Arguments that make the profile's `interpreters` program print the toolchain's
    /// sysroot (rustc: `--print sysroot`); empty when there is none.
    #[serde(default)]
    sysroot: Vec<String>,
    /// Path of the compiler, from `{sysroot}`; default: the `interpreters` program.
    #[serde(default)]
    compiler: Option<String>,
    /// Read-only mounts of the compile run (`{sysroot}` allowed).
    #[serde(default)]
    mounts: Vec<String>,
    /// Parts of the sysroot to mirror into a reachable directory when the sandbox's
    /// unprivileged ids cannot reach the sysroot itself.
    #[serde(default)]
    stage: Vec<String>,
    /// The compile run's whole environment; default: the profile's.
    #[serde(default)]
    env: BTreeMap<String, String>,
    /// Limits of the compile run.
    #[serde(default = "default_compile_limits")]
    limits: Limits,
}

fn default_version_probe() -> Vec<String> {
    vec!["--version".to_string()]
}

fn default_compile_limits() -> Limits {
    Limits {
        cpu_time_ms: 20_000,
        wall_time_ms: 40_000,
        memory_bytes: 1 << 30,
        output_bytes: 32 << 20,
        file_size_bytes: 128 << 20,
        processes: 32,
        open_files: 256,
        work_dir_bytes: 256 << 20,
    }
}

/// A profile's compile step resolved against this machine.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// Absolute path of the compiler that runs in the sandbox.
    pub compiler: PathBuf,
    /// The first line of the compiler's version output (part of the cache key).
    pub version: String,
    /// File name of the source in /work.
    pub source: String,
    /// File name of the artifact in /work; `None` when the source itself runs.
    pub artifact: Option<String>,
    /// Limits of the compile run.
    pub limits: Limits,
    /// Read-only mounts of the compile run.
    pub mounts: Vec<PathBuf>,
    /// Environment of the compile run.
    pub env: Vec<(String, String)>,
    /// The compile argv with `{compiler}` and `{sysroot}` filled in.
    command: Vec<String>,
}

impl Toolchain {
    /// Resolves `file` for the profile `name`, whose `interpreters` (`candidates`)
    /// resolved to the real binary `tool`. `profile_env` is the default environment. A
    /// missing compiler or a failed probe makes the language unavailable (with the
    /// reason), not the whole load fail.
    pub(crate) fn resolve(
        name: &str,
        file: &CompileFile,
        candidates: &[String],
        tool: &Path,
        profile_env: &BTreeMap<String, String>,
        origin: &Path,
    ) -> Result<Toolchain, JudgeError> {
        let unavailable = |reason: String| JudgeError::Unavailable {
            name: name.to_string(),
            reason,
        };
        let bad = |message: String| JudgeError::Profile {
            path: origin.to_path_buf(),
            message,
        };
        if file.command.is_empty() {
            return Err(bad("`compile.command` is empty".into()));
        }
        for (what, v) in [("compile.source", &file.source)]
            .into_iter()
            .chain(file.artifact.iter().map(|a| ("compile.artifact", a)))
        {
            if v.is_empty() || v.contains('/') || v.starts_with('.') {
                return Err(bad(format!(
                    "`{what}` must be a plain file name, not {v:?}"
                )));
            }
        }
        let sysroot = if file.sysroot.is_empty() {
            None
        } else {
            // Asked through the name the profile gave, not the resolved binary: a rustup
            // proxy is one binary that acts on the name it is called by.
            let launcher = candidates
                .iter()
                .find_map(|c| find_program(c))
                .unwrap_or_else(|| tool.to_path_buf());
            let out = probe(&launcher, &file.sysroot).map_err(&unavailable)?;
            let line = out.lines().next().unwrap_or("").trim().to_string();
            let path = std::fs::canonicalize(&line)
                .map_err(|e| unavailable(format!("sysroot {line:?}: {e}")))?;
            Some(path)
        };
        let fill = |s: &str, sysroot: Option<&Path>| -> Result<String, JudgeError> {
            if s.contains("{sysroot}") {
                let Some(root) = sysroot else {
                    return Err(bad(format!(
                        "{s:?} uses {{sysroot}} but `sysroot` is not set"
                    )));
                };
                Ok(s.replace("{sysroot}", &root.to_string_lossy()))
            } else {
                Ok(s.to_string())
            }
        };
        let compiler = match &file.compiler {
            Some(c) => PathBuf::from(fill(c, sysroot.as_deref())?),
            None => tool.to_path_buf(),
        };
        let compiler = std::fs::canonicalize(&compiler)
            .map_err(|e| unavailable(format!("compiler {}: {e}", compiler.display())))?;
        let version = probe(&compiler, &file.version)
            .map_err(&unavailable)?
            .lines()
            .next()
            .unwrap_or("")
            .trim()
            .to_string();
        if version.is_empty() {
            return Err(unavailable(format!(
                "{} printed no version",
                compiler.display()
            )));
        }

        // The sandbox's ids are unprivileged on the host: when we are root and the
        // toolchain sits under a directory they cannot enter, mount a mirror instead.
        let (sysroot, compiler) = match &sysroot {
            Some(root) if !file.stage.is_empty() && needs_staging(root) => {
                let mirror = stage_toolchain(name, root, &version, &file.stage)
                    .map_err(|e| unavailable(format!("staging {}: {e}", root.display())))?;
                let rel = compiler.strip_prefix(root).map_err(|_| {
                    bad(format!(
                        "compiler {} lies outside the sysroot {}",
                        compiler.display(),
                        root.display()
                    ))
                })?;
                let staged = mirror.join(rel);
                (Some(mirror), staged)
            }
            _ => (sysroot, compiler),
        };

        let mut mounts: Vec<PathBuf> = Vec::new();
        for m in &file.mounts {
            let path = PathBuf::from(fill(m, sysroot.as_deref())?);
            if path.exists() && !mounts.iter().any(|p| path.starts_with(p)) {
                mounts.push(path);
            }
        }
        if !mounts.iter().any(|p| compiler.starts_with(p)) {
            return Err(bad(format!(
                "compiler {} lies outside every compile mount",
                compiler.display()
            )));
        }
        if is_root() {
            if let Some(m) = mounts.iter().find(|m| !world_reachable(m)) {
                return Err(unavailable(format!(
                    "{} is not reachable by the sandbox's unprivileged ids; move the \
                     toolchain or list its parts under `compile.stage`",
                    m.display()
                )));
            }
        }
        if file.artifact.is_some() {
            for tool in [SHELL, BASE64] {
                if !Path::new(tool).exists() {
                    return Err(unavailable(format!(
                        "{tool} is missing (it carries the artifact out of the sandbox)"
                    )));
                }
            }
        }
        let compiler_s = compiler.to_string_lossy().into_owned();
        let command = file
            .command
            .iter()
            .map(|a| fill(a, sysroot.as_deref()).map(|a| a.replace("{compiler}", &compiler_s)))
            .collect::<Result<Vec<_>, _>>()?;
        let env = if file.env.is_empty() {
            profile_env
        } else {
            &file.env
        };
        Ok(Toolchain {
            compiler,
            version,
            source: file.source.clone(),
            artifact: file.artifact.clone(),
            limits: file.limits,
            mounts,
            env: env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            command,
        })
    }

    /// The compiler's argv inside the sandbox, with the source and artifact paths.
    pub fn command(&self) -> Vec<String> {
        let source = format!("/work/{}", self.source);
        let artifact = self
            .artifact
            .as_ref()
            .map(|a| format!("/work/{a}"))
            .unwrap_or_default();
        self.command
            .iter()
            .map(|a| {
                a.replace("{source}", &source)
                    .replace("{artifact}", &artifact)
            })
            .collect()
    }

    /// The content address of compiling `source` as `language` with this toolchain.
    pub fn cache_key(&self, language: &str, source: &str) -> String {
        let mut h = Sha256::new();
        for part in [
            CACHE_FORMAT,
            language,
            &self.version,
            &self.compiler.to_string_lossy(),
            self.artifact.as_deref().unwrap_or(""),
        ] {
            h.update(part.as_bytes());
            h.update([0u8]);
        }
        for a in &self.command {
            h.update(a.as_bytes());
            h.update([0u8]);
        }
        h.update((source.len() as u64).to_le_bytes());
        h.update(source.as_bytes());
        hex(&h.finalize())
    }
}

/// Runs `program args` on the host (outside the sandbox, once per profile load) and
/// returns its stdout, or stderr when stdout is empty (some compilers print versions
/// there).
fn probe(program: &Path, args: &[String]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{} {} failed with {}",
            program.display(),
            args.join(" "),
            out.status
        ));
    }
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if stdout.trim().is_empty() {
        Ok(String::from_utf8_lossy(&out.stderr).into_owned())
    } else {
        Ok(stdout)
    }
}

/// `candidate` as a path (when it has a slash) or found on PATH, symlinks kept.
fn find_program(candidate: &str) -> Option<PathBuf> {
    if candidate.contains('/') {
        let p = PathBuf::from(candidate);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(candidate))
        .find(|p| p.is_file())
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// True when a user with no relation to the path's owners can reach it: every
/// directory on the way is searchable by others, and the path itself readable.
fn world_reachable(path: &Path) -> bool {
    let mut cur = PathBuf::new();
    let mut comps = path.components().peekable();
    while let Some(c) = comps.next() {
        cur.push(c);
        let Ok(meta) = std::fs::metadata(&cur) else {
            return false;
        };
        let mode = meta.mode();
        let last = comps.peek().is_none();
        // Directories on the way need search permission; the target itself must also
        // be readable (a toolchain's directories are listed, its files read).
        let needed = match (meta.is_dir(), last) {
            (true, false) => 0o001,
            (true, true) => 0o005,
            (false, _) => 0o004,
        };
        if mode & needed != needed {
            return false;
        }
    }
    true
}

/// Whether the sysroot must be mirrored: only root runs the sandbox under foreign ids.
fn needs_staging(root: &Path) -> bool {
    is_root() && !world_reachable(root)
}

/// The directory that holds staged toolchains: shared by every Crucible process of this
/// user, since a mirror only depends on the toolchain.
fn staging_root() -> io::Result<PathBuf> {
    let base = match std::env::var_os("CRUCIBLE_TOOLCHAIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // SAFETY: geteuid has no preconditions.
            let uid = unsafe { libc::geteuid() };
            std::env::temp_dir().join(format!("crucible-toolchains-{uid}"))
        }
    };
    ensure_private_dir(&base)?;
    Ok(base)
}

/// Creates `dir` (mode 0755) if needed and checks it is ours and writable by no one
/// else: the sandbox mounts what is in it, so another user must not be able to plant
/// files there.
fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o755).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
    let meta = std::fs::symlink_metadata(dir)?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(io::Error::other(format!(
            "{} must be a directory owned by uid {uid} and writable by no one else",
            dir.display()
        )));
    }
    Ok(())
}

static TEMP_SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh name for a file or directory being built next to its final place.
pub(crate) fn temp_name(prefix: &str) -> String {
    format!(
        ".{prefix}-{}-{}",
        std::process::id(),
        TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// Mirrors `parts` of the toolchain at `root` into the staging directory (hard links,
/// or copies across file systems) and returns the mirror's root. Built under a temporary
/// name and renamed into place, so concurrent processes never see half a mirror.
fn stage_toolchain(
    name: &str,
    root: &Path,
    version: &str,
    parts: &[String],
) -> io::Result<PathBuf> {
    let base = staging_root()?;
    let mut h = Sha256::new();
    h.update(root.as_os_str().as_encoded_bytes());
    h.update([0u8]);
    h.update(version.as_bytes());
    for p in parts {
        h.update([0u8]);
        h.update(p.as_bytes());
    }
    let digest = hex(&h.finalize());
    let dest = base.join(format!("{name}-{}", &digest[..16]));
    let done = dest.join(".complete");
    if done.exists() {
        return Ok(dest);
    }
    let tmp = base.join(temp_name("stage"));
    std::fs::DirBuilder::new().mode(0o755).create(&tmp)?;
    let built = (|| -> io::Result<()> {
        for part in parts {
            let rel = Path::new(part);
            if rel.is_absolute() || rel.components().any(|c| c.as_os_str() == "..") {
                return Err(io::Error::other(format!("bad stage entry {part:?}")));
            }
            let to = tmp.join(rel);
            if let Some(parent) = to.parent() {
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .recursive(true)
                    .create(parent)?;
            }
            mirror(&root.join(rel), &to)?;
        }
        std::fs::write(tmp.join(".complete"), version)?;
        Ok(())
    })();
    if let Err(e) = built {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        let _ = std::fs::remove_dir_all(&tmp);
        // Another process finished first; its mirror is as good as ours.
        if !done.exists() {
            return Err(e);
        }
    }
    tracing::info!(from = %root.display(), to = %dest.display(), "staged toolchain");
    Ok(dest)
}

/// Hard-links (or copies) `from` to `to`, recursively for directories; symlinks are
/// recreated as they are.
fn mirror(from: &Path, to: &Path) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(from)?;
    if meta.file_type().is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(from)?, to)
    } else if meta.is_dir() {
        std::fs::DirBuilder::new().mode(0o755).create(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            mirror(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        if std::fs::hard_link(from, to).is_err() {
            std::fs::copy(from, to)?;
        }
        // Readable (and, for programs, executable) by the sandbox's ids.
        let mode = meta.mode() & 0o777;
        if mode & 0o004 == 0 {
            let _ = std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode | 0o044));
        }
        Ok(())
    }
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// What compiling one source gave.
#[derive(Debug, Clone)]
pub(crate) enum CompileOutcome {
    /// The program compiled: `artifact` is the host path of the file to mount and run
    /// (None when the checked source itself runs).
    Ok { artifact: Option<PathBuf> },
    /// The compiler rejected the program (its message, truncated). `cacheable` is false
    /// for failures that depend on load (time or memory limits), which a later
    /// submission of the same source retries.
    Error { message: String, cacheable: bool },
    /// The sandbox failed: nothing is known about the program.
    SandboxError { message: String },
}

/// A compile result, shared by every judgement of the same source.
#[derive(Debug)]
pub(crate) struct Compiled {
    pub outcome: CompileOutcome,
    pub key: String,
    pub cpu_ms: u64,
    pub wall_ms: u64,
    /// Bytes on disk (the artifact).
    bytes: u64,
    /// The entry's directory, removed when a private cache evicts it.
    dir: Option<PathBuf>,
}

/// The answer to a cache lookup.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    pub compiled: Arc<Compiled>,
    /// True when the result was already known (in memory or on disk).
    pub cached: bool,
}

/// One cache key's slot: its mutex is the single flight (the first caller compiles
/// while it holds it; the others wait and then find the result).
#[derive(Default)]
struct Slot {
    result: Mutex<Option<Arc<Compiled>>>,
    last_used: AtomicU64,
}

/// What an entry's meta.json records.
#[derive(Serialize, Deserialize)]
struct Meta {
    format: String,
    language: String,
    version: String,
    /// `ok` or `compile_error`.
    status: String,
    #[serde(default)]
    message: String,
    /// SHA-256 of the artifact, checked when another process's entry is loaded.
    #[serde(default)]
    artifact_sha256: Option<String>,
}

/// A content-addressed compile cache: an in-memory index over a directory of entries
/// (`KEY/meta.json` and `KEY/artifact`).
///
/// A *private* cache (the default) lives in a fresh directory that is removed when the
/// cache is dropped, and evicts least-recently-used entries nobody is using once its
/// artifacts pass a size bound. A *shared* cache ([`CompileCache::shared`], or
/// `CRUCIBLE_COMPILE_CACHE=DIR`) persists across processes and is never evicted by
/// Crucible; processes fill it with atomic renames, so none sees half an entry.
pub struct CompileCache {
    root: Mutex<Option<PathBuf>>,
    shared: Option<PathBuf>,
    max_bytes: u64,
    slots: Mutex<HashMap<String, Arc<Slot>>>,
    bytes: AtomicU64,
    clock: AtomicU64,
    compiles: AtomicU64,
    hits: AtomicU64,
}

impl std::fmt::Debug for CompileCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompileCache")
            .field("shared", &self.shared)
            .field("max_bytes", &self.max_bytes)
            .field("compiles", &self.compiles())
            .field("hits", &self.hits())
            .finish()
    }
}

impl Default for CompileCache {
    fn default() -> Self {
        CompileCache::private(DEFAULT_CACHE_BYTES)
    }
}

impl CompileCache {
    /// A private cache in a fresh temporary directory (made on first use), holding at
    /// most about `max_bytes` of artifacts.
    pub fn private(max_bytes: u64) -> CompileCache {
        CompileCache::new(None, max_bytes)
    }

    /// A cache in `dir`, shared with other processes and kept after exit.
    pub fn shared(dir: impl Into<PathBuf>) -> CompileCache {
        CompileCache::new(Some(dir.into()), u64::MAX)
    }

    fn new(shared: Option<PathBuf>, max_bytes: u64) -> CompileCache {
        CompileCache {
            root: Mutex::new(None),
            shared,
            max_bytes,
            slots: Mutex::new(HashMap::new()),
            bytes: AtomicU64::new(0),
            clock: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
            hits: AtomicU64::new(0),
        }
    }

    /// `CRUCIBLE_COMPILE_CACHE=DIR` gives a shared cache there; otherwise a private one
    /// bounded by `CRUCIBLE_COMPILE_CACHE_MB` (default 1024).
    pub fn from_env() -> CompileCache {
        if let Some(dir) = std::env::var_os("CRUCIBLE_COMPILE_CACHE").filter(|d| !d.is_empty()) {
            return CompileCache::shared(PathBuf::from(dir));
        }
        let mb = std::env::var("CRUCIBLE_COMPILE_CACHE_MB")
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok());
        CompileCache::private(mb.map_or(DEFAULT_CACHE_BYTES, |m| m << 20))
    }

    /// Compiler runs so far.
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// Lookups answered without running the compiler.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// The cache directory, created on first use.
    fn root(&self) -> Result<PathBuf, String> {
        let mut root = lock(&self.root);
        if let Some(r) = root.as_ref() {
            return Ok(r.clone());
        }
        let dir = match &self.shared {
            Some(d) => {
                ensure_private_dir(d).map_err(|e| format!("compile cache: {e}"))?;
                d.clone()
            }
            None => {
                let d = std::env::temp_dir().join(format!(
                    "crucible-compile-{}-{}",
                    std::process::id(),
                    TEMP_SEQ.fetch_add(1, Ordering::Relaxed)
                ));
                // 0755: the sandboxed program (another uid) must reach its artifact.
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&d)
                    .map_err(|e| format!("compile cache {}: {e}", d.display()))?;
                d
            }
        };
        if noexec(&dir) {
            return Err(format!(
                "compile cache {} is on a noexec file system; set CRUCIBLE_COMPILE_CACHE to \
                 a directory where programs may run",
                dir.display()
            ));
        }
        *root = Some(dir.clone());
        Ok(dir)
    }

    /// The compile result for `key`: from memory, from disk, or by running `compile`
    /// (exactly once however many callers ask at the same time). `compile` gets the
    /// directory to leave its entry in.
    pub(crate) fn get_or_compile(
        &self,
        key: &str,
        compile: impl FnOnce(&Path) -> Compiled,
    ) -> Lookup {
        let slot = lock(&self.slots)
            .entry(key.to_string())
            .or_default()
            .clone();
        slot.last_used.store(
            self.clock.fetch_add(1, Ordering::Relaxed),
            Ordering::Relaxed,
        );
        let mut result = lock(&slot.result);
        if let Some(c) = result.as_ref() {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup {
                compiled: c.clone(),
                cached: true,
            };
        }
        let root = match self.root() {
            Ok(r) => r,
            Err(message) => {
                return Lookup {
                    compiled: Arc::new(Compiled {
                        outcome: CompileOutcome::SandboxError { message },
                        key: key.to_string(),
                        cpu_ms: 0,
                        wall_ms: 0,
                        bytes: 0,
                        dir: None,
                    }),
                    cached: false,
                }
            }
        };
        if let Some(c) = load_entry(&root, key) {
            let c = Arc::new(c);
            *result = Some(c.clone());
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Lookup {
                compiled: c,
                cached: true,
            };
        }
        self.compiles.fetch_add(1, Ordering::Relaxed);
        let c = Arc::new(compile(&root));
        let keep = match &c.outcome {
            CompileOutcome::Ok { .. } => true,
            CompileOutcome::Error { cacheable, .. } => *cacheable,
            CompileOutcome::SandboxError { .. } => false,
        };
        // Callers already waiting on this slot share the result either way (so 64
        // identical submissions never run 64 slow compiles one after another); a
        // load-dependent failure is only taken out of the index, so later arrivals retry.
        *result = Some(c.clone());
        drop(result);
        if keep {
            self.bytes.fetch_add(c.bytes, Ordering::Relaxed);
            self.evict(key);
        } else {
            let mut slots = lock(&self.slots);
            if slots.get(key).is_some_and(|s| Arc::ptr_eq(s, &slot)) {
                slots.remove(key);
            }
        }
        Lookup {
            compiled: c,
            cached: false,
        }
    }

    /// Drops least-recently-used entries that no judgement holds, until a private
    /// cache's artifacts are under its byte bound and the in-memory index under
    /// [`MAX_INDEXED`] entries. A private cache deletes what it drops; a shared one only
    /// forgets it (the entry stays on disk for the next lookup).
    fn evict(&self, keep: &str) {
        let over_bytes =
            |c: &CompileCache| c.shared.is_none() && c.bytes.load(Ordering::Relaxed) > c.max_bytes;
        let mut slots = lock(&self.slots);
        if !over_bytes(self) && slots.len() <= MAX_INDEXED {
            return;
        }
        let mut order: Vec<(u64, String)> = slots
            .iter()
            .filter(|(k, _)| k.as_str() != keep)
            .map(|(k, s)| (s.last_used.load(Ordering::Relaxed), k.clone()))
            .collect();
        order.sort_unstable();
        for (_, key) in order {
            if !over_bytes(self) && slots.len() <= MAX_INDEXED * 3 / 4 {
                break;
            }
            let Some(slot) = slots.get(&key).cloned() else {
                continue;
            };
            // A slot someone else holds (compiling, waiting, or just looked up) stays.
            if Arc::strong_count(&slot) > 2 {
                continue;
            }
            let Ok(mut result) = slot.result.try_lock() else {
                continue;
            };
            if result.as_ref().is_some_and(|c| Arc::strong_count(c) > 1) {
                continue;
            }
            if let Some(c) = result.take() {
                self.bytes.fetch_sub(c.bytes, Ordering::Relaxed);
                if let (None, Some(dir)) = (&self.shared, &c.dir) {
                    if let Err(e) = std::fs::remove_dir_all(dir) {
                        tracing::warn!(dir = %dir.display(), error = %e, "evicting compile cache entry");
                    }
                }
            }
            drop(result);
            slots.remove(&key);
        }
    }
}

impl Drop for CompileCache {
    fn drop(&mut self) {
        if self.shared.is_none() {
            if let Some(root) = lock(&self.root).take() {
                if let Err(e) = std::fs::remove_dir_all(&root) {
                    tracing::warn!(dir = %root.display(), error = %e, "removing the compile cache");
                }
            }
        }
    }
}

/// Locks `m`, recovering from poisoning: a panicked judgement leaves the data valid.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn noexec(dir: &Path) -> bool {
    nix_statvfs_noexec(dir).unwrap_or(false)
}

fn nix_statvfs_noexec(dir: &Path) -> io::Result<bool> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
    // SAFETY: statvfs fills the struct for a NUL-terminated path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st.f_flag & libc::ST_NOEXEC != 0)
}

/// Name of the artifact inside a cache entry.
const ARTIFACT_FILE: &str = "artifact";
const META_FILE: &str = "meta.json";

/// Loads the entry for `key` left by an earlier judgement (possibly of another
/// process), checking the artifact's hash; a damaged entry is removed and missed.
fn load_entry(root: &Path, key: &str) -> Option<Compiled> {
    let dir = root.join(key);
    let text = std::fs::read_to_string(dir.join(META_FILE)).ok()?;
    let meta: Meta = match serde_json::from_str(&text) {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(entry = %dir.display(), error = %e, "unreadable compile cache entry");
            return None;
        }
    };
    if meta.format != CACHE_FORMAT {
        return None;
    }
    let outcome = match meta.status.as_str() {
        "compile_error" => CompileOutcome::Error {
            message: meta.message,
            cacheable: true,
        },
        "ok" => match &meta.artifact_sha256 {
            None => CompileOutcome::Ok { artifact: None },
            Some(want) => {
                let path = dir.join(ARTIFACT_FILE);
                let bytes = std::fs::read(&path).ok()?;
                if hex(&Sha256::digest(&bytes)) != *want {
                    tracing::warn!(entry = %dir.display(), "compile cache entry does not match its hash; recompiling");
                    let _ = std::fs::remove_dir_all(&dir);
                    return None;
                }
                CompileOutcome::Ok {
                    artifact: Some(path),
                }
            }
        },
        _ => return None,
    };
    let bytes = std::fs::metadata(dir.join(ARTIFACT_FILE)).map_or(0, |m| m.len());
    Some(Compiled {
        outcome,
        key: key.to_string(),
        cpu_ms: 0,
        wall_ms: 0,
        bytes,
        dir: Some(dir),
    })
}

/// Writes an entry under a temporary name and renames it into place. Returns the
/// entry's directory (which may be another process's identical entry that won).
fn store_entry(
    root: &Path,
    key: &str,
    meta: &Meta,
    artifact: Option<&[u8]>,
) -> io::Result<PathBuf> {
    let dest = root.join(key);
    let tmp = root.join(temp_name("entry"));
    std::fs::DirBuilder::new().mode(0o755).create(&tmp)?;
    let written = (|| -> io::Result<()> {
        if let Some(bytes) = artifact {
            let path = tmp.join(ARTIFACT_FILE);
            std::fs::write(&path, bytes)?;
            // Readable and runnable by the sandbox's ids; writable by no one.
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o555))?;
        }
        let json = serde_json::to_vec(meta).map_err(io::Error::other)?;
        std::fs::write(tmp.join(META_FILE), json)?;
        Ok(())
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dest.join(META_FILE).exists() {
            return Err(e);
        }
    }
    Ok(dest)
}

/// The RunSpec of a sandboxed run; built in one place so that a change to RunSpec's
/// fields touches one line here.
pub(crate) fn run_spec(
    argv: Vec<String>,
    env: Vec<(String, String)>,
    files: Vec<(String, Vec<u8>)>,
    stdin: Vec<u8>,
    limits: Limits,
    mounts: Vec<PathBuf>,
) -> RunSpec {
    RunSpec {
        argv,
        env,
        files,
        stdin,
        limits,
        mounts,
    }
}

/// Compiles `source` with `tc` (through `cache`), inside `sandbox`.
pub(crate) fn compile(
    sandbox: &ProcessSandbox,
    cache: &CompileCache,
    language: &str,
    tc: &Toolchain,
    source: &str,
) -> Lookup {
    let key = tc.cache_key(language, source);
    cache.get_or_compile(&key, |root| {
        let run = run_compiler(sandbox, tc, source);
        let (outcome, artifact) = interpret(tc, &run);
        let mut compiled = Compiled {
            outcome,
            key: key.clone(),
            cpu_ms: run.cpu_ms,
            wall_ms: run.wall_ms,
            bytes: artifact.as_ref().map_or(0, |a| a.len() as u64),
            dir: None,
        };
        let (status, message) = match &compiled.outcome {
            CompileOutcome::Ok { .. } => ("ok", String::new()),
            CompileOutcome::Error {
                message,
                cacheable: true,
            } => ("compile_error", message.clone()),
            _ => return compiled,
        };
        let meta = Meta {
            format: CACHE_FORMAT.to_string(),
            language: language.to_string(),
            version: tc.version.clone(),
            status: status.to_string(),
            message,
            artifact_sha256: artifact.as_ref().map(|a| hex(&Sha256::digest(a))),
        };
        match store_entry(root, &key, &meta, artifact.as_deref()) {
            Ok(dir) => {
                if let CompileOutcome::Ok {
                    artifact: Some(path),
                } = &mut compiled.outcome
                {
                    *path = dir.join(ARTIFACT_FILE);
                }
                compiled.dir = Some(dir);
            }
            Err(e) => {
                compiled.outcome = CompileOutcome::SandboxError {
                    message: format!("storing the compiled program: {e}"),
                };
            }
        }
        compiled
    })
}

/// Runs the compiler in the sandbox. For toolchains with an artifact the compiler runs
/// under a small shell that sends the artifact back as base64 on stdout.
fn run_compiler(sandbox: &ProcessSandbox, tc: &Toolchain, source: &str) -> RunReport {
    let command = tc.command();
    let argv = match &tc.artifact {
        Some(a) => {
            let mut argv = vec![
                SHELL.to_string(),
                "-c".to_string(),
                WRAPPER.to_string(),
                format!("/work/{a}"),
            ];
            argv.extend(command);
            argv
        }
        None => command,
    };
    let spec = run_spec(
        argv,
        tc.env.clone(),
        vec![(tc.source.clone(), source.as_bytes().to_vec())],
        Vec::new(),
        tc.limits,
        tc.mounts.clone(),
    );
    let run = sandbox.run(&spec);
    tracing::debug!(status = ?run.status, cpu_ms = run.cpu_ms, wall_ms = run.wall_ms, "compiler run");
    run
}

/// Turns the compiler's run into an outcome and, on success, the artifact's bytes.
fn interpret(tc: &Toolchain, run: &RunReport) -> (CompileOutcome, Option<Vec<u8>>) {
    let message = |why: &str| {
        let text = clip_head(run.stderr.trim(), COMPILE_MESSAGE_MAX);
        match (why.is_empty(), text.is_empty()) {
            (true, _) => text,
            (false, true) => why.to_string(),
            (false, false) => format!("{why}: {text}"),
        }
    };
    match run.status {
        RunStatus::Ok => match &tc.artifact {
            None => (CompileOutcome::Ok { artifact: None }, None),
            Some(_) => match base64_decode(run.stdout.trim()) {
                Ok(bytes) if !bytes.is_empty() => (
                    CompileOutcome::Ok {
                        artifact: Some(PathBuf::new()),
                    },
                    Some(bytes),
                ),
                Ok(_) => (
                    CompileOutcome::Error {
                        message: message("the compiler left an empty program"),
                        cacheable: true,
                    },
                    None,
                ),
                Err(e) => (
                    CompileOutcome::SandboxError {
                        message: format!("reading the compiled program back: {e}"),
                    },
                    None,
                ),
            },
        },
        RunStatus::SandboxError => (
            CompileOutcome::SandboxError {
                message: format!(
                    "compiler run: {}",
                    run.message.as_deref().unwrap_or("sandbox error")
                ),
            },
            None,
        ),
        RunStatus::TimeLimitExceeded => (
            CompileOutcome::Error {
                message: message(&format!(
                    "compilation exceeded its time limit ({} ms CPU, {} ms wall)",
                    tc.limits.cpu_time_ms, tc.limits.wall_time_ms
                )),
                cacheable: false,
            },
            None,
        ),
        RunStatus::MemoryLimitExceeded => (
            CompileOutcome::Error {
                message: message(&format!(
                    "compilation exceeded its memory limit ({} MiB)",
                    tc.limits.memory_bytes >> 20
                )),
                cacheable: false,
            },
            None,
        ),
        RunStatus::OutputLimitExceeded => (
            CompileOutcome::Error {
                message: message(&format!(
                    "the compiler's output (messages, or the program itself) exceeded {} bytes",
                    tc.limits.output_bytes
                )),
                cacheable: true,
            },
            None,
        ),
        RunStatus::RuntimeError | RunStatus::CompileError => {
            let why = match (run.exit_code, run.signal) {
                (_, Some(sig)) => format!("the compiler was killed by signal {sig}"),
                _ => String::new(),
            };
            (
                CompileOutcome::Error {
                    message: message(&why),
                    cacheable: true,
                },
                None,
            )
        }
    }
}

/// The first `max` bytes of `s` (on a char boundary), with an ellipsis when cut.
pub(crate) fn clip_head(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reachability() {
        assert!(world_reachable(Path::new("/usr/bin")));
        let dir = tempfile::tempdir().unwrap();
        let inner = dir.path().join("x");
        std::fs::create_dir(&inner).unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(!world_reachable(&inner));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(world_reachable(&inner));
    }

    fn compiled(outcome: CompileOutcome) -> Compiled {
        Compiled {
            outcome,
            key: "k".into(),
            cpu_ms: 0,
            wall_ms: 0,
            bytes: 10,
            dir: None,
        }
    }

    #[test]
    fn single_flight_compiles_once() {
        let cache = Arc::new(CompileCache::private(1 << 20));
        let calls = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let cache = cache.clone();
                let calls = calls.clone();
                std::thread::spawn(move || {
                    cache
                        .get_or_compile("same", |_| {
                            calls.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            compiled(CompileOutcome::Ok { artifact: None })
                        })
                        .cached
                })
            })
            .collect();
        let cached: Vec<bool> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cached.iter().filter(|c| !**c).count(), 1);
        assert_eq!((cache.compiles(), cache.hits()), (1, 15));
    }

    #[test]
    fn load_dependent_failures_are_not_kept() {
        let cache = CompileCache::private(1 << 20);
        for _ in 0..2 {
            let l = cache.get_or_compile("k", |_| {
                compiled(CompileOutcome::Error {
                    message: "too slow".into(),
                    cacheable: false,
                })
            });
            assert!(!l.cached);
        }
        assert_eq!(cache.compiles(), 2);
        let l = cache.get_or_compile("e", |_| {
            compiled(CompileOutcome::Error {
                message: "syntax".into(),
                cacheable: true,
            })
        });
        assert!(!l.cached);
        assert!(cache.get_or_compile("e", |_| unreachable!()).cached);
    }

    #[test]
    fn private_cache_evicts_unused_entries_and_removes_its_dir() {
        let cache = CompileCache::private(25);
        let root = cache.root().unwrap();
        let mut held = Vec::new();
        for k in ["a", "b", "c"] {
            let dir = root.join(k);
            std::fs::create_dir(&dir).unwrap();
            let l = cache.get_or_compile(k, |_| Compiled {
                dir: Some(dir.clone()),
                ..compiled(CompileOutcome::Ok { artifact: None })
            });
            if k == "a" {
                held.push(l);
            }
        }
        // "a" is in use, so "b" (the least recent unused entry) went to make room.
        assert!(root.join("a").exists());
        assert!(!root.join("b").exists());
        assert!(root.join("c").exists());
        drop(held);
        drop(cache);
        assert!(!root.exists(), "a private cache removes its directory");
    }

    #[test]
    fn shared_entries_survive_and_are_verified() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let meta = Meta {
            format: CACHE_FORMAT.into(),
            language: "c".into(),
            version: "v".into(),
            status: "ok".into(),
            message: String::new(),
            artifact_sha256: Some(hex(&Sha256::digest(b"binary"))),
        };
        let entry = store_entry(dir.path(), "key1", &meta, Some(b"binary")).unwrap();
        let c = load_entry(dir.path(), "key1").expect("entry loads");
        assert!(
            matches!(c.outcome, CompileOutcome::Ok { artifact: Some(ref p) } if p == &entry.join(ARTIFACT_FILE))
        );
        // A damaged artifact is not trusted.
        let art = entry.join(ARTIFACT_FILE);
        std::fs::set_permissions(&art, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(&art, b"tampered").unwrap();
        assert!(load_entry(dir.path(), "key1").is_none());
        assert!(!entry.exists());
    }
}
