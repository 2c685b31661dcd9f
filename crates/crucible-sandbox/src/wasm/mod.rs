//! The wasm backend: programs run as WebAssembly modules inside wasmtime, with WASI
//! preview1 as their only view of the world.
//!
//! - **Deterministic limits.** The time limit is a *fuel* budget: wasmtime counts the
//!   instructions a guest executes and traps when the budget is spent, so the same program
//!   with the same input and budget gets the same verdict and the same `fuel_used` on every
//!   run and every machine. An epoch deadline (a wall clock ticked by a background thread)
//!   remains as a safety net for time spent outside guest code.
//! - **Nothing else observable varies either.** The guest's clocks are virtual (time =
//!   fuel consumed at the run's rate, plus virtual sleeps that cost no host time), its
//!   random source is a fixed stream, and its file system is one fresh directory.
//! - **Isolation.** No network (no sockets are ever granted), and no host file system but a
//!   per-run temporary directory preopened at `/work` (opened through cap-std by
//!   wasmtime-wasi, so paths cannot climb out of it). Memory is capped by a
//!   [`wasmtime::ResourceLimiter`]: a guest that asks for more sees the allocation fail, and
//!   a run that then fails is memory_limit_exceeded. stdout and stderr are capped; past the
//!   cap the guest is stopped (output_limit_exceeded). Bytes written to files are capped
//!   too.
//! - **Speed.** Modules are compiled once to `.cwasm` files in a cache keyed by the
//!   wasmtime version, the engine's configuration and the module's hash, loaded with
//!   `Module::deserialize_file` (an mmap), and instantiated through an `InstancePre` from
//!   a pooling allocator, with a fresh `Store` per run. Interpreters can be
//!   pre-initialised (see [`WasmSandbox::snapshot`]).

mod cache;
mod snapshot;
mod wasi;

use crucible_core::{Limits, RunReport, RunStatus};
use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, Ref, ResourceLimiter, Store, Trap, Val,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::MemoryInputPipe;
use wasmtime_wasi::{FsPerms, WasiCtxBuilder};

pub use cache::default_cache_dir;

/// Where a run's files live inside the guest.
pub const WORK_DIR: &str = "/work";
/// For a snapshot module, the file (in the work dir) that carries the run's argv as a
/// JSON array of strings: a pre-initialised guest has already read its real argv.
pub const ARGV_FILE: &str = ".crucible_argv.json";
/// The file a guest writes during snapshot start-up to name its run entry point (see
/// [`WasmSandbox::snapshot`]).
pub const ENTRY_FILE: &str = ".crucible_entry.json";
/// How often the epoch (the wall-clock safety net) advances.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Fuel for a snapshot's start-up: far more than any interpreter needs to start.
const SNAPSHOT_FUEL: u64 = 50_000_000_000;

/// Errors setting up the wasm backend or preparing a module. A failure during a run is
/// never an error: it is a [`RunReport`] (sandbox_error when the host is at fault).
#[derive(Debug, thiserror::Error)]
pub enum WasmError {
    /// wasmtime refused the engine configuration.
    #[error("cannot create the wasmtime engine: {0}")]
    Engine(String),
    /// A module did not compile or load.
    #[error("cannot compile or load wasm module {name}: {message}")]
    Module { name: String, message: String },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Pre-initialising a module failed.
    #[error("cannot snapshot the module: {0}")]
    Snapshot(String),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> WasmError + '_ {
    move |source| WasmError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Settings for a [`WasmSandbox`].
#[derive(Clone, Debug)]
pub struct WasmConfig {
    /// Where compiled modules (`.cwasm`) are kept; default [`default_cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// Where per-run directories are made; default `/dev/shm` when it is usable (memory:
    /// no disk I/O per run), else `std::env::temp_dir()`.
    pub scratch_dir: Option<PathBuf>,
    /// Instances that may exist at once (slots of the pooling allocator).
    pub max_instances: u32,
    /// The largest linear memory any run may have; runs asking more get this.
    pub max_memory_bytes: u64,
}

impl Default for WasmConfig {
    fn default() -> Self {
        WasmConfig {
            cache_dir: None,
            scratch_dir: None,
            max_instances: 64,
            max_memory_bytes: 4 << 30,
        }
    }
}

/// How a run starts a module.
#[derive(Clone, Debug)]
enum Entry {
    /// A WASI command: call `_start`.
    Start,
    /// A snapshot: call function-table entry `index` with `args`.
    Table {
        index: u32,
        args: Vec<i32>,
        clock_offset_ns: u64,
    },
}

/// A compiled module, ready to instantiate. Cheap to share between threads.
pub struct WasmModule {
    name: String,
    pre: InstancePre<RunState>,
    entry: Entry,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("name", &self.name)
            .field("entry", &self.entry)
            .finish()
    }
}

impl WasmModule {
    /// The name it was loaded under (a file name, or what the caller gave).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// True for a pre-initialised module made by [`WasmSandbox::snapshot`].
    pub fn is_snapshot(&self) -> bool {
        matches!(self.entry, Entry::Table { .. })
    }
}

/// One run of a module.
#[derive(Clone, Debug)]
pub struct WasmRunSpec<'a> {
    /// What to run.
    pub module: &'a WasmModule,
    /// The guest's argv (argv[0] is a program name). For a snapshot module it is written
    /// to [`ARGV_FILE`] in the work dir instead.
    pub argv: Vec<String>,
    /// The guest's whole environment (a snapshot keeps the one it started with).
    pub env: Vec<(String, String)>,
    /// Files written into the work dir before the run, by relative path.
    pub files: Vec<(String, Vec<u8>)>,
    /// Everything the guest reads on stdin.
    pub stdin: Vec<u8>,
    /// Memory, output, file and wall-clock limits. `cpu_time_ms` is not used directly:
    /// the time limit is `fuel`.
    pub limits: Limits,
    /// The fuel budget: instructions the guest may execute before time_limit_exceeded.
    pub fuel: u64,
    /// Fuel per millisecond of guest time: the rate of the guest's virtual clock.
    pub fuel_per_ms: u64,
}

/// A guest's start-up, run once to make a snapshot (see [`WasmSandbox::snapshot`]).
#[derive(Clone, Debug, Default)]
pub struct SnapshotSpec {
    /// The guest's argv during start-up.
    pub argv: Vec<String>,
    /// The guest's environment, which the snapshot keeps for every run.
    pub env: Vec<(String, String)>,
    /// Files in the work dir during start-up.
    pub files: Vec<(String, Vec<u8>)>,
    /// The virtual clock's rate during start-up.
    pub fuel_per_ms: u64,
}

/// Caps linear memory and tables, and remembers the peak and whether a growth was refused.
struct MemoryLimiter {
    limit: usize,
    peak: usize,
    denied: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.denied = true;
            return Ok(false);
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Table entries cost host memory too; a generous fixed cap stops a table bomb.
        Ok(desired <= 1 << 20)
    }
}

/// Everything a store holds for one run.
pub(crate) struct RunState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
    pub(crate) fuel_budget: u64,
    pub(crate) fuel_per_ms: u64,
    pub(crate) slept_ns: u64,
    pub(crate) clock_offset_ns: u64,
    /// Epoch ticks this run may last (the wall-clock safety net).
    wall_ticks: u64,
    ticks: u64,
    /// The run's directory and the most its files may hold.
    dir: PathBuf,
    file_limit: u64,
    /// Which host-side limit stopped the run, if one did.
    stopped: Option<Stopped>,
    /// The deterministic file identities and times the guest sees.
    files: wasi::VirtualFiles,
}

/// A limit enforced from the epoch callback, outside guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    Wall,
    Files,
}

/// Message of the trap the epoch callback raises; recognised when the run ends.
const HOST_LIMIT_TRAP: &str = "crucible: host-side limit";

/// Bytes under `dir` (logical file sizes, so a sparse file counts in full), stopping
/// early once past `cap`.
fn dir_bytes(dir: &Path, cap: u64) -> u64 {
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total = total.saturating_add(md.len());
            }
            if total > cap {
                return total;
            }
        }
    }
    total
}

/// Runs every epoch tick while a guest executes: ends the run at the wall-clock limit,
/// and when its files outgrow their budget (WASI has no disk quota of its own, so a
/// guest could otherwise fill the host's disk; the check bounds the overshoot to what a
/// guest writes in one tick).
fn on_epoch(
    mut ctx: wasmtime::StoreContextMut<'_, RunState>,
) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    let st = ctx.data_mut();
    st.ticks += 1;
    if st.ticks >= st.wall_ticks {
        st.stopped = Some(Stopped::Wall);
        return Err(wasmtime::Error::msg(HOST_LIMIT_TRAP));
    }
    if dir_bytes(&st.dir, st.file_limit) > st.file_limit {
        st.stopped = Some(Stopped::Files);
        return Err(wasmtime::Error::msg(HOST_LIMIT_TRAP));
    }
    Ok(wasmtime::UpdateDeadline::Continue(1))
}

/// The wasm sandbox: one engine, a module cache and the linker. `run` may be called from
/// many threads at once.
pub struct WasmSandbox {
    engine: Engine,
    /// WASI preview1 from wasmtime-wasi, with our clock and poll overrides.
    linker: Linker<RunState>,
    cache: cache::ModuleCache,
    scratch_dir: PathBuf,
    max_memory: u64,
    loaded: Mutex<HashMap<String, Arc<WasmModule>>>,
    stop: Arc<AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for WasmSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmSandbox")
            .field("cache", &self.cache.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for WasmSandbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
    }
}

/// The engine configuration. Part of every cache key (through wasmtime's compatibility
/// hash), so changing it recompiles instead of loading mismatched code.
fn engine_config(cfg: &WasmConfig) -> Config {
    let mut c = Config::new();
    c.consume_fuel(true);
    c.epoch_interruption(true);
    // The default 512 KiB keeps wasm stacks inside the 2 MiB stacks of tokio's blocking
    // threads, where the judge runs programs; deeper recursion is a clean trap.
    c.max_wasm_stack(512 << 10);
    c.parallel_compilation(true);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_core_instances(cfg.max_instances)
        .total_memories(cfg.max_instances)
        .total_tables(cfg.max_instances)
        .max_memory_size(usize::try_from(cfg.max_memory_bytes).unwrap_or(usize::MAX))
        // CPython's function table has a few thousand entries; leave room.
        .table_elements(1 << 16);
    c.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    c
}

fn thread_cpu_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes only into the timespec we pass.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// `/dev/shm` when we can make directories there, else the temp dir. Each run writes and
/// deletes files in its directory; on a disk file system that costs a journal update and
/// sometimes a synchronous discard per run.
fn default_scratch_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    let usable = tempfile::Builder::new()
        .prefix("crucible-probe-")
        .tempdir_in(shm)
        .is_ok();
    if usable {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

thread_local! {
    /// This thread's work directory per scratch dir, reused run after run (emptied after
    /// each): a run happens on its caller's thread, so no two runs share one at a time.
    static WORK_DIRS: std::cell::RefCell<HashMap<PathBuf, tempfile::TempDir>> =
        std::cell::RefCell::new(HashMap::new());
}

/// Removes everything inside `dir`, leaving it empty.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// A relative path with no `..`, or None.
fn safe_relative(p: &str) -> Option<&Path> {
    let path = Path::new(p);
    let ok = !p.is_empty() && path.components().all(|c| matches!(c, Component::Normal(_)));
    ok.then_some(path)
}

impl WasmSandbox {
    /// Makes the engine (with its pooling allocator), the WASI linker and the cache dir,
    /// and starts the epoch ticker.
    pub fn new(cfg: WasmConfig) -> Result<WasmSandbox, WasmError> {
        let engine =
            Engine::new(&engine_config(&cfg)).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let mut linker: Linker<RunState> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut RunState| &mut s.wasi)
            .map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        wasi::add_overrides(&mut linker).map_err(|e| WasmError::Engine(format!("{e:#}")))?;
        let cache_dir = cfg.cache_dir.clone().unwrap_or_else(default_cache_dir);
        let cache = cache::ModuleCache::new(cache_dir, &engine)?;
        let scratch_dir = cfg.scratch_dir.clone().unwrap_or_else(default_scratch_dir);
        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("crucible-wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| WasmError::Engine(format!("cannot start the epoch thread: {e}")))?
        };
        Ok(WasmSandbox {
            engine,
            linker,
            cache,
            scratch_dir,
            max_memory: cfg.max_memory_bytes,
            loaded: Mutex::new(HashMap::new()),
            stop,
            ticker: Some(ticker),
        })
    }

    /// The directory of compiled modules.
    pub fn cache_dir(&self) -> &Path {
        self.cache.dir()
    }

    fn remember(&self, key: String, module: WasmModule) -> Arc<WasmModule> {
        let module = Arc::new(module);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        // Modules compiled from submissions are many; keep the map from growing forever.
        if loaded.len() >= 512 {
            loaded.clear();
        }
        loaded.entry(key).or_insert(module).clone()
    }

    fn cached(&self, key: &str) -> Option<Arc<WasmModule>> {
        let loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        loaded.get(key).cloned()
    }

    fn prepare(&self, name: &str, module: &Module, entry: Entry) -> Result<WasmModule, WasmError> {
        let pre = self
            .linker
            .instantiate_pre(module)
            .map_err(|e| WasmError::Module {
                name: name.to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(WasmModule {
            name: name.to_string(),
            pre,
            entry,
        })
    }

    /// Loads a WASI command module from a file, compiling it into the cache on first use
    /// (later loads, in any process, map the cached `.cwasm`).
    pub fn load_file(&self, path: &Path) -> Result<Arc<WasmModule>, WasmError> {
        let key = format!("file:{}", path.display());
        if let Some(m) = self.cached(&key) {
            return Ok(m);
        }
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        let module = self.cache.load(&self.engine, &name, &bytes, true)?;
        let prepared = self.prepare(&name, &module, Entry::Start)?;
        Ok(self.remember(key, prepared))
    }

    /// Compiles a WASI command module from bytes (a program built from a submission).
    /// With `persist` the compiled code is also kept in the on-disk cache.
    pub fn load_bytes(
        &self,
        name: &str,
        bytes: &[u8],
        persist: bool,
    ) -> Result<Arc<WasmModule>, WasmError> {
        let key = format!("bytes:{}", cache::digest(&[bytes]));
        if let Some(m) = self.cached(&key) {
            return Ok(m);
        }
        let module = self.cache.load(&self.engine, name, bytes, persist)?;
        let prepared = self.prepare(name, &module, Entry::Start)?;
        Ok(self.remember(key, prepared))
    }

    /// A pre-initialised copy of the command module at `path`.
    ///
    /// The module is run once with `spec` (argv, environment, files in the work dir).
    /// Its start-up must end by writing [`ENTRY_FILE`] into the work dir and exiting with
    /// status 0. That file is JSON:
    /// `{"slot": A, "args": [i32...], "checks": [[address, u32]...]}`: `slot` is the
    /// address of a 32-bit word holding the function-table index that each run calls with
    /// `args`; every `checks` pair must read back as given (the guest's guard against a
    /// layout it guessed wrong). Memory and globals at that point become the new module's
    /// initial state, so a run starts with everything start-up did already done. Runs of
    /// the snapshot read their argv from [`ARGV_FILE`].
    ///
    /// The result is cached on disk by the module's and the spec's hash.
    pub fn snapshot(&self, path: &Path, spec: &SnapshotSpec) -> Result<Arc<WasmModule>, WasmError> {
        let spec_json = serde_json::json!({
            "argv": spec.argv, "env": spec.env,
            "files": spec.files.iter().map(|(n, b)| (n.clone(), cache::digest(&[b]))).collect::<Vec<_>>(),
            "fuel_per_ms": spec.fuel_per_ms,
        })
        .to_string();
        // Looked up by path first: reading and hashing the module on every run would cost
        // more than the run.
        let mem_key = format!("snapshot:{}:{spec_json}", path.display());
        if let Some(m) = self.cached(&mem_key) {
            return Ok(m);
        }
        let base = std::fs::read(path).map_err(io_err(path))?;
        let key = cache::digest(&[&base, spec_json.as_bytes()]);
        let name = format!(
            "{} (snapshot)",
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let (module, entry) = match self.cache.load_snapshot(&self.engine, &name, &key)? {
            Some(found) => found,
            None => {
                let started = Instant::now();
                let (bytes, entry) = self.make_snapshot(&name, &base, spec)?;
                let module =
                    self.cache
                        .store_snapshot(&self.engine, &name, &key, &bytes, &entry)?;
                tracing::info!(module = %name, ms = started.elapsed().as_millis() as u64, "made snapshot");
                (module, entry)
            }
        };
        let prepared = self.prepare(&name, &module, entry)?;
        Ok(self.remember(mem_key, prepared))
    }

    fn make_snapshot(
        &self,
        name: &str,
        base: &[u8],
        spec: &SnapshotSpec,
    ) -> Result<(Vec<u8>, Entry), WasmError> {
        let (instrumented, layout) = snapshot::instrument(base)?;
        let module = self.cache.load(&self.engine, name, &instrumented, true)?;
        let prepared = self.prepare(name, &module, Entry::Start)?;
        let dir = self.run_dir()?;
        let limits = Limits {
            memory_bytes: self.max_memory,
            ..Limits::default()
        };
        let run = WasmRunSpec {
            module: &prepared,
            argv: spec.argv.clone(),
            env: spec.env.clone(),
            files: spec.files.clone(),
            stdin: Vec::new(),
            limits,
            fuel: SNAPSHOT_FUEL,
            fuel_per_ms: spec.fuel_per_ms,
        };
        let mut captured: Option<(Vec<snapshot::GlobalValue>, Vec<u8>, u64)> = None;
        let report = self.execute(&run, dir.path(), None, |store, instance| {
            let mut globals = Vec::new();
            for i in layout.defined_global_indices() {
                let g = instance
                    .get_global(
                        &mut *store,
                        &format!("{}{i}", snapshot::GLOBAL_EXPORT_PREFIX),
                    )
                    .ok_or_else(|| format!("global {i} not exported"))?;
                globals.push(match g.get(&mut *store) {
                    Val::I32(v) => snapshot::GlobalValue::I32(v),
                    Val::I64(v) => snapshot::GlobalValue::I64(v),
                    Val::F32(v) => snapshot::GlobalValue::F32(v),
                    Val::F64(v) => snapshot::GlobalValue::F64(v),
                    other => return Err(format!("global {i} holds {other:?}")),
                });
            }
            let memory = instance
                .get_memory(&mut *store, "memory")
                .ok_or("no memory export")?;
            let data = memory.data(&*store).to_vec();
            let st = store.data();
            let used = SNAPSHOT_FUEL.saturating_sub(store.get_fuel().unwrap_or(0));
            let clock = st.slept_ns.saturating_add(
                (u128::from(used) * 1_000_000 / u128::from(st.fuel_per_ms.max(1))) as u64,
            );
            captured = Some((globals, data, clock));
            Ok(())
        });
        if report.status != RunStatus::Ok {
            return Err(WasmError::Snapshot(format!(
                "start-up ended with {:?} (exit {:?}): {} {}",
                report.status,
                report.exit_code,
                report.message.unwrap_or_default(),
                report
                    .stderr
                    .chars()
                    .rev()
                    .take(2000)
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect::<String>()
            )));
        }
        let (globals, memory, clock_offset_ns) =
            captured.ok_or_else(|| WasmError::Snapshot("state was not captured".into()))?;
        let entry_path = dir.path().join(ENTRY_FILE);
        let entry_text = std::fs::read_to_string(&entry_path).map_err(io_err(&entry_path))?;
        let entry: serde_json::Value = serde_json::from_str(&entry_text)
            .map_err(|e| WasmError::Snapshot(format!("{ENTRY_FILE}: {e}")))?;
        let read_u32 = |addr: u64| -> Result<u32, WasmError> {
            let a = usize::try_from(addr).unwrap_or(usize::MAX);
            memory
                .get(a..a.saturating_add(4))
                .and_then(|b| b.try_into().ok())
                .map(u32::from_le_bytes)
                .ok_or_else(|| WasmError::Snapshot(format!("address {addr} is outside memory")))
        };
        let slot = entry["slot"]
            .as_u64()
            .ok_or_else(|| WasmError::Snapshot(format!("{ENTRY_FILE}: no slot")))?;
        let index = read_u32(slot)?;
        let args: Vec<i32> = entry["args"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_i64())
                    .map(|v| v as i32)
                    .collect()
            })
            .unwrap_or_default();
        for check in entry["checks"].as_array().into_iter().flatten() {
            let (Some(addr), Some(want)) = (check[0].as_u64(), check[1].as_u64()) else {
                return Err(WasmError::Snapshot(format!(
                    "{ENTRY_FILE}: bad check {check}"
                )));
            };
            let got = read_u32(addr)?;
            if u64::from(got) != want {
                return Err(WasmError::Snapshot(format!(
                    "layout check failed at {addr}: read {got}, expected {want}"
                )));
            }
        }
        let bytes = snapshot::build(&instrumented, &layout, &globals, &memory)?;
        Ok((
            bytes,
            Entry::Table {
                index,
                args,
                clock_offset_ns,
            },
        ))
    }

    fn run_dir(&self) -> Result<tempfile::TempDir, WasmError> {
        tempfile::Builder::new()
            .prefix("crucible-wasm-")
            .tempdir_in(&self.scratch_dir)
            .map_err(io_err(&self.scratch_dir))
    }

    /// Runs a module once and reports what happened. Never fails: a host-side problem is
    /// a report with status sandbox_error.
    pub fn run(&self, spec: &WasmRunSpec<'_>) -> RunReport {
        self.run_inner(spec, None)
    }

    /// Runs a module once, like [`run`](Self::run), with `channel` (a socket) as the
    /// guest's stdin and stdout instead of `spec.stdin` and a captured stdout: the guest
    /// talks with the process at the other end (stderr is still captured).
    pub fn run_with_channel(
        &self,
        spec: &WasmRunSpec<'_>,
        channel: std::os::fd::OwnedFd,
    ) -> RunReport {
        self.run_inner(spec, Some(wasi::Channel::new(channel)))
    }

    fn run_inner(&self, spec: &WasmRunSpec<'_>, channel: Option<wasi::Channel>) -> RunReport {
        // The thread's empty work dir, made on first use. A directory that cannot be
        // emptied after a run is dropped (and removed) and the next run makes another.
        let dir = WORK_DIRS.with(|dirs| -> Result<PathBuf, WasmError> {
            let mut dirs = dirs.borrow_mut();
            if let Some(d) = dirs.get(&self.scratch_dir) {
                return Ok(d.path().to_path_buf());
            }
            let d = self.run_dir()?;
            let path = d.path().to_path_buf();
            dirs.insert(self.scratch_dir.clone(), d);
            Ok(path)
        });
        let dir = match dir {
            Ok(d) => d,
            Err(e) => return RunReport::sandbox_error(e.to_string()),
        };
        let mut report = self.execute(spec, &dir, channel, |_, _| Ok(()));
        if let Err(e) = empty_dir(&dir) {
            tracing::warn!(error = %e, dir = %dir.display(), "could not empty a wasm work dir");
            WORK_DIRS.with(|dirs| dirs.borrow_mut().remove(&self.scratch_dir));
            if report.status != RunStatus::SandboxError {
                report
                    .message
                    .get_or_insert_with(|| format!("work dir not emptied: {e}"));
            }
        }
        report
    }

    /// One run in `dir`. `after` sees the store and instance once the guest has stopped
    /// (used to capture a snapshot); an error from it makes the run a sandbox error.
    fn execute(
        &self,
        spec: &WasmRunSpec<'_>,
        dir: &Path,
        channel: Option<wasi::Channel>,
        after: impl FnOnce(&mut Store<RunState>, &wasmtime::Instance) -> Result<(), String>,
    ) -> RunReport {
        let started = Instant::now();
        let cpu0 = thread_cpu_ms();
        let mut files = spec.files.clone();
        let (clock_offset_ns, table_entry) = match &spec.module.entry {
            Entry::Start => (0, None),
            Entry::Table {
                index,
                args,
                clock_offset_ns,
            } => {
                let argv = serde_json::to_vec(&spec.argv).unwrap_or_default();
                files.push((ARGV_FILE.to_string(), argv));
                (*clock_offset_ns, Some((*index, args.clone())))
            }
        };
        for (name, bytes) in &files {
            let Some(rel) = safe_relative(name) else {
                return RunReport::sandbox_error(format!("bad work-dir file name {name:?}"));
            };
            let path = dir.join(rel);
            if let Some(parent) = path.parent() {
                if let Err(e) = std::fs::create_dir_all(parent) {
                    return RunReport::sandbox_error(format!("{}: {e}", parent.display()));
                }
            }
            if let Err(e) = std::fs::write(&path, bytes) {
                return RunReport::sandbox_error(format!("{}: {e}", path.display()));
            }
        }
        let stdout = wasi::CappedPipe::new(spec.limits.output_bytes);
        let stderr = wasi::CappedPipe::new(spec.limits.output_bytes);
        let mut b = WasiCtxBuilder::new();
        b.args(&spec.argv).envs(&spec.env).stderr(stderr.clone());
        match channel {
            Some(c) => b.stdin(c.clone()).stdout(c),
            None => b
                .stdin(MemoryInputPipe::new(spec.stdin.clone()))
                .stdout(stdout.clone()),
        };
        b.secure_random(wasi::deterministic_random())
            .insecure_random(wasi::deterministic_random())
            .insecure_random_seed(0)
            .wall_clock(wasi::FixedWallClock)
            .monotonic_clock(wasi::FixedMonotonicClock)
            .allow_blocking_current_thread(true);
        if let Err(e) = b.preopened_dir(dir, WORK_DIR, FsPerms::ReadWrite) {
            return RunReport::sandbox_error(format!("cannot open the work dir: {e:#}"));
        }
        let memory_limit = spec.limits.memory_bytes.min(self.max_memory);
        let state = RunState {
            wasi: b.build_p1(),
            limiter: MemoryLimiter {
                limit: usize::try_from(memory_limit).unwrap_or(usize::MAX),
                peak: 0,
                denied: false,
            },
            fuel_budget: spec.fuel,
            fuel_per_ms: spec.fuel_per_ms.max(1),
            slept_ns: 0,
            clock_offset_ns,
            wall_ticks: spec.limits.wall_time_ms / EPOCH_TICK.as_millis() as u64 + 1,
            ticks: 0,
            dir: dir.to_path_buf(),
            file_limit: spec.limits.work_dir_bytes,
            stopped: None,
            files: wasi::VirtualFiles::default(),
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        if let Err(e) = store.set_fuel(spec.fuel) {
            return RunReport::sandbox_error(format!("cannot set fuel: {e:#}"));
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(on_epoch);

        let instance = match spec.module.pre.instantiate(&mut store) {
            Ok(i) => i,
            Err(e) => {
                let denied = store.data().limiter.denied;
                let mut r = RunReport::sandbox_error(format!("cannot instantiate: {e:#}"));
                if denied {
                    // The module's initial memory alone is over the limit.
                    r.status = RunStatus::MemoryLimitExceeded;
                    r.message = Some(format!(
                        "the module's initial memory exceeds the {memory_limit}-byte limit"
                    ));
                    r.fuel_used = Some(0);
                }
                return r;
            }
        };
        let result: wasmtime::Result<()> = match &table_entry {
            None => instance
                .get_typed_func::<(), ()>(&mut store, "_start")
                .and_then(|f| f.call(&mut store, ())),
            Some((index, args)) => call_table_entry(&mut store, &instance, *index, args),
        };
        let fuel_used = spec.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        let after_result = after(&mut store, &instance);
        let (out, out_over) = stdout.take();
        let (err, err_over) = stderr.take();
        let st = store.data();
        let (mut status, exit_code, mut message) = classify(result, spec.fuel);
        if out_over || err_over {
            status = RunStatus::OutputLimitExceeded;
            message = Some(format!(
                "output limit exceeded ({} bytes on {})",
                spec.limits.output_bytes,
                if out_over { "stdout" } else { "stderr" }
            ));
        } else if status != RunStatus::Ok && st.limiter.denied {
            status = RunStatus::MemoryLimitExceeded;
            message = Some(format!("memory limit exceeded ({memory_limit} bytes)"));
        } else if st.stopped == Some(Stopped::Wall) {
            status = RunStatus::TimeLimitExceeded;
            message = Some(format!(
                "time limit exceeded: wall-clock safety net ({} ms)",
                spec.limits.wall_time_ms
            ));
        } else if st.stopped == Some(Stopped::Files) {
            status = RunStatus::RuntimeError;
            message = Some(format!(
                "file size limit exceeded: the program's files outgrew {} bytes",
                st.file_limit
            ));
        }
        let mut report = RunReport {
            status,
            exit_code,
            signal: None,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
            stdout_truncated: out_over,
            stderr_truncated: err_over,
            cpu_ms: thread_cpu_ms().saturating_sub(cpu0),
            wall_ms: started.elapsed().as_millis() as u64,
            memory_kb: (st.limiter.peak / 1024) as u64,
            message,
            fuel_used: Some(fuel_used),
        };
        if let Err(e) = after_result {
            report.status = RunStatus::SandboxError;
            report.message = Some(e);
        }
        report
    }
}

/// Calls a snapshot's entry: function-table entry `index`, with i32 arguments, returning
/// one i32 (ignored: the entry ends the run through `proc_exit`).
fn call_table_entry(
    store: &mut Store<RunState>,
    instance: &wasmtime::Instance,
    index: u32,
    args: &[i32],
) -> wasmtime::Result<()> {
    let table = instance
        .get_table(&mut *store, snapshot::TABLE_EXPORT)
        .ok_or_else(|| wasmtime::Error::msg("crucible: snapshot has no table export"))?;
    let func = match table.get(&mut *store, u64::from(index)) {
        Some(Ref::Func(Some(f))) => f,
        _ => {
            return Err(wasmtime::Error::msg(format!(
                "crucible: table entry {index} is not a function"
            )))
        }
    };
    let params: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
    let mut results = vec![Val::I32(0); func.ty(&*store).results().len()];
    func.call(&mut *store, &params, &mut results)
}

/// Status, exit code and message for how the guest's call ended.
fn classify(result: wasmtime::Result<()>, fuel: u64) -> (RunStatus, Option<i32>, Option<String>) {
    let e = match result {
        Ok(()) => return (RunStatus::Ok, Some(0), None),
        Err(e) => e,
    };
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        let status = if exit.0 == 0 {
            RunStatus::Ok
        } else {
            RunStatus::RuntimeError
        };
        return (status, Some(exit.0), None);
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => (
                RunStatus::TimeLimitExceeded,
                None,
                Some(format!("time limit exceeded: fuel budget of {fuel} spent")),
            ),
            Trap::Interrupt => (
                RunStatus::TimeLimitExceeded,
                None,
                Some("time limit exceeded: wall-clock safety net (epoch deadline)".into()),
            ),
            Trap::StackOverflow => (RunStatus::RuntimeError, None, Some("stack overflow".into())),
            other => (
                RunStatus::RuntimeError,
                None,
                Some(format!("wasm trap: {other}")),
            ),
        };
    }
    let text = format!("{e:#}");
    if text.contains(wasi::OUTPUT_LIMIT_TRAP) {
        return (RunStatus::OutputLimitExceeded, None, Some(text));
    }
    (RunStatus::RuntimeError, None, Some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(module (memory 1) (export "memory") (func (export "_start") BODY))`, with BODY
    /// given as raw instruction bytes (without the final `end`).
    fn module(body: &[u8]) -> Vec<u8> {
        let mut code = vec![0u8]; // no locals
        code.extend_from_slice(body);
        code.push(0x0b);
        let mut m = b"\0asm\x01\0\0\0".to_vec();
        m.extend_from_slice(&[0x01, 0x04, 0x01, 0x60, 0x00, 0x00]); // type () -> ()
        m.extend_from_slice(&[0x03, 0x02, 0x01, 0x00]); // one function of type 0
        m.extend_from_slice(&[0x05, 0x03, 0x01, 0x00, 0x01]); // memory, 1 page
        m.extend_from_slice(&[0x07, 0x13, 0x02]);
        m.extend_from_slice(&[0x06, b'm', b'e', b'm', b'o', b'r', b'y', 0x02, 0x00]);
        m.extend_from_slice(&[0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x00]);
        m.extend_from_slice(&[0x0a, (code.len() + 2) as u8, 0x01, code.len() as u8]);
        m.extend_from_slice(&code);
        m
    }

    fn sandbox(cache: &Path) -> WasmSandbox {
        WasmSandbox::new(WasmConfig {
            cache_dir: Some(cache.to_path_buf()),
            max_instances: 4,
            max_memory_bytes: 64 << 20,
            ..WasmConfig::default()
        })
        .expect("sandbox")
    }

    fn spec(module: &WasmModule, fuel: u64) -> WasmRunSpec<'_> {
        WasmRunSpec {
            module,
            argv: vec!["m".into()],
            env: vec![],
            files: vec![("in/a.txt".into(), b"x".to_vec())],
            stdin: vec![],
            limits: Limits::default(),
            fuel,
            fuel_per_ms: 1_000_000,
        }
    }

    #[test]
    fn endless_loop_spends_exactly_its_fuel() {
        let cache = tempfile::tempdir().unwrap();
        let sb = sandbox(cache.path());
        // loop; br 0; end
        let m = sb
            .load_bytes("spin", &module(&[0x03, 0x40, 0x0c, 0x00, 0x0b]), false)
            .unwrap();
        for _ in 0..3 {
            let r = sb.run(&spec(&m, 1_000_000));
            assert_eq!(r.status, RunStatus::TimeLimitExceeded, "{r:?}");
            assert_eq!(r.fuel_used, Some(1_000_000));
        }
    }

    #[test]
    fn returning_start_is_ok_and_cached_on_disk() {
        let cache = tempfile::tempdir().unwrap();
        let sb = sandbox(cache.path());
        let bytes = module(&[]);
        let m = sb.load_bytes("nop", &bytes, true).unwrap();
        let r = sb.run(&spec(&m, 1_000));
        assert_eq!(r.status, RunStatus::Ok, "{r:?}");
        assert_eq!(r.exit_code, Some(0));
        assert!(r.fuel_used.is_some_and(|f| f <= 2));
        let cwasm = std::fs::read_dir(cache.path())
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .count();
        assert_eq!(cwasm, 1, "compiled once into the cache");
        // A second sandbox maps the cached file instead of compiling.
        let again = sandbox(cache.path());
        let m = again.load_bytes("nop", &bytes, true).unwrap();
        assert_eq!(again.run(&spec(&m, 1_000)).status, RunStatus::Ok);
    }

    #[test]
    fn relative_paths_only() {
        assert!(safe_relative("a/b.py").is_some());
        assert!(safe_relative("../x").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
        assert!(safe_relative("").is_none());
    }
}
