//! Per-run cgroups for memory and pids limits (and CPU accounting where available).
//!
//! v2 is used where a cgroup2 hierarchy offers the memory and pids controllers and we
//! can create and enable them under our parent; otherwise v1 with separate memory and
//! pids hierarchies (cpuacct optional); otherwise none.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Which cgroup hierarchy a [`ProcessSandbox`](crate::ProcessSandbox) puts runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Unified hierarchy with the memory and pids controllers.
    V2,
    /// Legacy hierarchies: memory and pids (and cpuacct when mounted).
    V1,
    /// No usable cgroups: memory is limited by RLIMIT_AS only, processes by RLIMIT_NPROC.
    None,
}

/// Cgroup mounts found in /proc/self/mountinfo.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CgroupMounts {
    pub v2: Option<PathBuf>,
    pub v1_memory: Option<PathBuf>,
    pub v1_pids: Option<PathBuf>,
    pub v1_cpuacct: Option<PathBuf>,
}

/// Finds the cgroup mounts in the text of /proc/self/mountinfo.
///
/// Each line is `id parent dev root mountpoint options [optional...] - fstype source
/// superoptions`; a v1 hierarchy names its controllers in the super options.
pub(crate) fn parse_mountinfo(text: &str) -> CgroupMounts {
    let mut out = CgroupMounts::default();
    for line in text.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let mut r = right.split(' ');
        let (Some(fstype), Some(_source), Some(superopts)) = (r.next(), r.next(), r.next()) else {
            continue;
        };
        let mp = PathBuf::from(unescape_mountinfo(mountpoint));
        match fstype {
            "cgroup2" => {
                out.v2.get_or_insert(mp);
            }
            "cgroup" => {
                let opts: Vec<&str> = superopts.split(',').collect();
                if opts.contains(&"memory") {
                    out.v1_memory.get_or_insert(mp.clone());
                }
                if opts.contains(&"pids") {
                    out.v1_pids.get_or_insert(mp.clone());
                }
                if opts.contains(&"cpuacct") {
                    out.v1_cpuacct.get_or_insert(mp);
                }
            }
            _ => {}
        }
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space and so on).
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            out.push((v & 0xff) as u8);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Value of `key` in a flat-keyed cgroup file (`key value` per line), such as v2's
/// memory.events or v1's memory.oom_control.
pub(crate) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        if it.next() == Some(key) {
            it.next().and_then(|v| v.parse().ok())
        } else {
            None
        }
    })
}

/// A single-number cgroup file; `max` (v2's "no limit") reads as u64::MAX.
pub(crate) fn parse_number(text: &str) -> Option<u64> {
    let t = text.trim();
    if t == "max" {
        Some(u64::MAX)
    } else {
        t.parse().ok()
    }
}

fn read_to_string(p: &Path) -> io::Result<String> {
    fs::read_to_string(p)
}

fn write_file(p: &Path, value: &str) -> io::Result<()> {
    fs::write(p, value).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("writing {value:?} to {}: {e}", p.display()),
        )
    })
}

fn mkdir_exist_ok(p: &Path) -> io::Result<()> {
    match fs::create_dir(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("creating {}: {e}", p.display()),
        )),
    }
}

/// Removes a cgroup directory, retrying while the kernel still sees tasks in it (EBUSY
/// right after they die) for up to two seconds.
pub(crate) fn remove_cgroup_dir(p: &Path) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        match fs::remove_dir(p) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The parent cgroups runs are created under.
#[derive(Debug, Clone)]
pub(crate) enum CgroupHost {
    V2 {
        parent: PathBuf,
    },
    V1 {
        memory: PathBuf,
        pids: PathBuf,
        cpuacct: Option<PathBuf>,
    },
    None,
}

/// A probe cgroup's name, unique to this call: sandboxes made at once in one process
/// (tests, a server's workers) must not remove each other's probe mid-probe, which made
/// one of them give up on cgroups and run without memory and pids limits.
fn probe_name() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("probe-{}-{}", owner(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// This process as the owner named in the cgroups it creates (`run-OWNER-...`,
/// `probe-OWNER-...`): its pid namespace's inode number and its pid there. A process
/// that dies without cleaning up (SIGKILL, or a judge kept in a `static`, which is never
/// dropped) leaves its cgroups behind; [`sweep_stale`] removes those whose owner is gone.
pub(crate) fn owner() -> &'static str {
    static OWNER: OnceLock<String> = OnceLock::new();
    OWNER.get_or_init(|| format!("{}.{}", pid_namespace(), std::process::id()))
}

/// The inode number of our pid namespace, or 0 when it cannot be read (then nothing of
/// ours is ever swept: 0 matches no live namespace).
fn pid_namespace() -> u64 {
    fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// The pid of the owner of a cgroup named `name`, when the name is one of ours and the
/// owner lives in the pid namespace `ns` (only there does its pid mean anything to us).
fn owner_pid(name: &str, ns: u64) -> Option<u32> {
    let rest = name
        .strip_prefix("run-")
        .or_else(|| name.strip_prefix("probe-"))?;
    let (owner, _) = rest.split_once('-')?;
    let (owner_ns, pid) = owner.split_once('.')?;
    if ns == 0 || owner_ns.parse::<u64>().ok()? != ns {
        return None;
    }
    pid.parse().ok()
}

/// Removes the empty cgroups under `parent` left by processes of our pid namespace that
/// no longer exist. A cgroup still holding a task (or a child cgroup) stays: rmdir
/// refuses it. A dead owner's pid reused by a live process keeps its cgroups until that
/// one is gone too. Returns how many were removed.
pub(crate) fn sweep_stale(parent: &Path) -> usize {
    let ns = pid_namespace();
    let me = std::process::id();
    let Ok(entries) = fs::read_dir(parent) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| owner_pid(n, ns)) else {
            continue;
        };
        if pid == me || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        match fs::remove_dir(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => {
                tracing::debug!(cgroup = %entry.path().display(), error = %e, "stale cgroup stays")
            }
        }
    }
    removed
}

/// Sweeps each parent once per process: a server makes many sandboxes, and only the
/// first needs to look.
fn sweep_once(parents: &[&Path]) {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let removed: usize = parents.iter().map(|p| sweep_stale(p)).sum();
        if removed > 0 {
            tracing::info!(removed, "removed cgroups left by processes that are gone");
        }
    });
}

impl CgroupHost {
    /// Probes the host once: creates the parent cgroup(s) named `parent` and a probe
    /// child with a memory limit, preferring v2, then v1, then none.
    pub(crate) fn detect(parent: &str) -> CgroupHost {
        let mountinfo = read_to_string(Path::new("/proc/self/mountinfo")).unwrap_or_default();
        let mounts = parse_mountinfo(&mountinfo);
        if let Some(root) = &mounts.v2 {
            match Self::setup_v2(root, parent) {
                Ok(h) => return h,
                Err(e) => tracing::debug!(error = %e, "cgroup v2 not usable"),
            }
        }
        if let (Some(mem), Some(pids)) = (&mounts.v1_memory, &mounts.v1_pids) {
            match Self::setup_v1(mem, pids, mounts.v1_cpuacct.as_deref(), parent) {
                Ok(h) => return h,
                Err(e) => tracing::debug!(error = %e, "cgroup v1 not usable"),
            }
        }
        tracing::warn!(
            "no usable cgroup hierarchy: runs get no memory or pids cgroup; memory is limited \
             by RLIMIT_AS and processes by RLIMIT_NPROC only"
        );
        CgroupHost::None
    }

    fn setup_v2(root: &Path, parent: &str) -> io::Result<CgroupHost> {
        let has = |dir: &Path| -> io::Result<bool> {
            let c = read_to_string(&dir.join("cgroup.controllers"))?;
            let words: Vec<&str> = c.split_whitespace().collect();
            Ok(words.contains(&"memory") && words.contains(&"pids"))
        };
        if !has(root)? {
            return Err(io::Error::other("memory/pids controllers not available"));
        }
        let dir = root.join(parent);
        mkdir_exist_ok(&dir)?;
        // The controllers must be enabled on the way down; the root may already have
        // them, and a write there can fail when we are not its owner.
        let _ = write_file(&root.join("cgroup.subtree_control"), "+memory +pids");
        if !has(&dir)? {
            return Err(io::Error::other(
                "memory/pids not delegated to the parent cgroup",
            ));
        }
        write_file(&dir.join("cgroup.subtree_control"), "+memory +pids")?;
        sweep_once(&[&dir]);
        let probe = dir.join(probe_name());
        mkdir_exist_ok(&probe)?;
        let r = write_file(&probe.join("memory.max"), "67108864")
            .and_then(|_| write_file(&probe.join("pids.max"), "8"));
        let _ = remove_cgroup_dir(&probe);
        r?;
        Ok(CgroupHost::V2 { parent: dir })
    }

    fn setup_v1(
        mem: &Path,
        pids: &Path,
        cpuacct: Option<&Path>,
        parent: &str,
    ) -> io::Result<CgroupHost> {
        let mem_dir = mem.join(parent);
        let pids_dir = pids.join(parent);
        mkdir_exist_ok(&mem_dir)?;
        mkdir_exist_ok(&pids_dir)?;
        let probe_name = probe_name();
        let (mp, pp) = (mem_dir.join(&probe_name), pids_dir.join(&probe_name));
        mkdir_exist_ok(&mp)?;
        mkdir_exist_ok(&pp)?;
        let r = write_file(&mp.join("memory.limit_in_bytes"), "67108864")
            .and_then(|_| write_file(&pp.join("pids.max"), "8"));
        let _ = remove_cgroup_dir(&mp);
        let _ = remove_cgroup_dir(&pp);
        r?;
        let cpuacct = cpuacct.and_then(|c| {
            let d = c.join(parent);
            mkdir_exist_ok(&d).ok().map(|_| d)
        });
        let mut parents = vec![mem_dir.as_path(), pids_dir.as_path()];
        parents.extend(cpuacct.as_deref());
        sweep_once(&parents);
        Ok(CgroupHost::V1 {
            memory: mem_dir,
            pids: pids_dir,
            cpuacct,
        })
    }

    /// The mode this host gives runs.
    pub(crate) fn mode(&self) -> CgroupMode {
        match self {
            CgroupHost::V2 { .. } => CgroupMode::V2,
            CgroupHost::V1 { .. } => CgroupMode::V1,
            CgroupHost::None => CgroupMode::None,
        }
    }

    /// Whether run cgroups measure CPU time (v2 always; v1 with a cpuacct hierarchy).
    pub(crate) fn measures_cpu(&self) -> bool {
        match self {
            CgroupHost::V2 { .. } => true,
            CgroupHost::V1 { cpuacct, .. } => cpuacct.is_some(),
            CgroupHost::None => false,
        }
    }

    /// Creates the cgroup(s) for one run with its memory and process limits. Returns
    /// None in mode None. On error nothing is left behind.
    pub(crate) fn create_run(
        &self,
        name: &str,
        memory_bytes: u64,
        pids: u64,
    ) -> io::Result<Option<RunCgroup>> {
        let mut cg = match self {
            CgroupHost::None => return Ok(None),
            CgroupHost::V2 { parent } => RunCgroup {
                dirs: vec![parent.join(name)],
                kind: Kind::V2,
            },
            CgroupHost::V1 {
                memory,
                pids,
                cpuacct,
            } => {
                let mut dirs = vec![memory.join(name), pids.join(name)];
                if let Some(c) = cpuacct {
                    dirs.push(c.join(name));
                }
                RunCgroup {
                    dirs,
                    kind: Kind::V1,
                }
            }
        };
        // On any error, Drop removes whatever was created.
        let wanted = std::mem::take(&mut cg.dirs);
        for d in wanted {
            let mut r = fs::create_dir(&d);
            if matches!(&r, Err(e) if e.kind() == io::ErrorKind::AlreadyExists) {
                // Left by a crashed process that had our pid; empty ones can go.
                r = remove_cgroup_dir(&d).and_then(|_| fs::create_dir(&d));
            }
            if let Err(e) = r {
                return Err(io::Error::new(
                    e.kind(),
                    format!("creating {}: {e}", d.display()),
                ));
            }
            cg.dirs.push(d);
        }
        let mem = memory_bytes.to_string();
        let pids_max = pids.to_string();
        match cg.kind {
            Kind::V2 => {
                let d = &cg.dirs[0];
                write_file(&d.join("memory.max"), &mem)?;
                // Absent without swap accounting; then there is no swap to escape to.
                let swap = d.join("memory.swap.max");
                if swap.exists() {
                    write_file(&swap, "0")?;
                }
                write_file(&d.join("pids.max"), &pids_max)?;
            }
            Kind::V1 => {
                let m = &cg.dirs[0];
                write_file(&m.join("memory.limit_in_bytes"), &mem)?;
                let memsw = m.join("memory.memsw.limit_in_bytes");
                if memsw.exists() {
                    write_file(&memsw, &mem)?;
                }
                write_file(&cg.dirs[1].join("pids.max"), &pids_max)?;
            }
        }
        Ok(Some(cg))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    V1,
    V2,
}

/// What a run's cgroup recorded.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CgroupStats {
    /// Peak memory usage in bytes, if the kernel reports it.
    pub peak_bytes: Option<u64>,
    /// How many tasks the OOM killer killed in the cgroup.
    pub oom_kills: u64,
}

/// The cgroup(s) of one run; removed when dropped.
#[derive(Debug)]
pub(crate) struct RunCgroup {
    /// v2: [dir]; v1: [memory, pids, cpuacct?].
    dirs: Vec<PathBuf>,
    kind: Kind,
}

impl RunCgroup {
    /// Moves process `pid` (and so all its future children) into the cgroup(s).
    pub(crate) fn attach(&self, pid: i32) -> io::Result<()> {
        let p = pid.to_string();
        for d in &self.dirs {
            write_file(&d.join("cgroup.procs"), &p)?;
        }
        Ok(())
    }

    /// CPU time used so far by everything in the cgroup, in nanoseconds, where known.
    pub(crate) fn cpu_usage_ns(&self) -> Option<u64> {
        match self.kind {
            Kind::V2 => {
                let t = read_to_string(&self.dirs[0].join("cpu.stat")).ok()?;
                keyed_value(&t, "usage_usec").map(|us| us.saturating_mul(1000))
            }
            Kind::V1 => {
                let d = self.dirs.get(2)?;
                parse_number(&read_to_string(&d.join("cpuacct.usage")).ok()?)
            }
        }
    }

    /// Reads the peak memory and OOM-kill count.
    pub(crate) fn stats(&self) -> CgroupStats {
        let d = &self.dirs[0];
        match self.kind {
            Kind::V2 => CgroupStats {
                peak_bytes: read_to_string(&d.join("memory.peak"))
                    .ok()
                    .and_then(|t| parse_number(&t)),
                oom_kills: read_to_string(&d.join("memory.events"))
                    .ok()
                    .and_then(|t| keyed_value(&t, "oom_kill"))
                    .unwrap_or(0),
            },
            Kind::V1 => {
                let oom = read_to_string(&d.join("memory.oom_control"))
                    .ok()
                    .and_then(|t| keyed_value(&t, "oom_kill"));
                // Kernels before 4.13 lack oom_kill; then a failed charge at the limit
                // is the best sign there is.
                let oom_kills = match oom {
                    Some(n) => n,
                    None => read_to_string(&d.join("memory.failcnt"))
                        .ok()
                        .and_then(|t| parse_number(&t))
                        .map(|f| u64::from(f > 0))
                        .unwrap_or(0),
                };
                CgroupStats {
                    peak_bytes: read_to_string(&d.join("memory.max_usage_in_bytes"))
                        .ok()
                        .and_then(|t| parse_number(&t)),
                    oom_kills,
                }
            }
        }
    }
}

/// Reads a number from an already open cgroup file (from its start).
fn read_open_number(f: &fs::File) -> Option<u64> {
    parse_number(&read_open(f)?)
}

/// Reads an already open cgroup file from its start (kernfs regenerates the text).
fn read_open(f: &fs::File) -> Option<String> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; 512];
    let n = f.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok().map(str::to_string)
}

/// Writes a value to an already open cgroup file.
fn write_open(f: &fs::File, value: &str) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    f.write_at(value.as_bytes(), 0).map(|_| ())
}

/// The files of an exec cgroup that are used for every execution, opened once.
#[derive(Debug)]
struct ExecFiles {
    /// v1 memory.max_usage_in_bytes; v2 memory.peak (reset per open file, Linux 6.12+).
    peak: fs::File,
    /// v1 memory.failcnt (reset with the peak).
    failcnt: Option<fs::File>,
    /// v1 memory.oom_control; v2 memory.events.
    oom: fs::File,
    /// v1 cpuacct.usage; v2 cpu.stat.
    cpu: Option<fs::File>,
    pids_current: fs::File,
    /// v1 memory.usage_in_bytes; v2 memory.current.
    usage: fs::File,
}

/// A cgroup reused by every execution of a fork-server slot: limits are changed only
/// when they differ, and counters are reset (or baselined, where the kernel cannot
/// reset them) at the start of each execution.
#[derive(Debug)]
pub(crate) struct ExecCgroup {
    cg: RunCgroup,
    files: ExecFiles,
    /// The memory and pids limits in force.
    limits: (u64, u64),
    /// Counters at the start of the execution (OOM kills; v2 CPU nanoseconds).
    base_oom: u64,
    base_cpu_ns: u64,
    /// v2: whether memory.peak could be reset for this execution.
    peak_reset: bool,
}

impl ExecCgroup {
    /// Creates the cgroup(s) `name` under `host` (None in mode None).
    pub(crate) fn create(host: &CgroupHost, name: &str) -> io::Result<Option<ExecCgroup>> {
        let limits = (512 << 20, 64);
        let Some(cg) = host.create_run(name, limits.0, limits.1)? else {
            return Ok(None);
        };
        let open = |p: PathBuf, write: bool| {
            fs::OpenOptions::new()
                .read(true)
                .write(write)
                .open(&p)
                .map_err(|e| io::Error::new(e.kind(), format!("opening {}: {e}", p.display())))
        };
        let d = cg.dirs[0].clone();
        let files = match cg.kind {
            Kind::V1 => ExecFiles {
                peak: open(d.join("memory.max_usage_in_bytes"), true)?,
                failcnt: Some(open(d.join("memory.failcnt"), true)?),
                oom: open(d.join("memory.oom_control"), false)?,
                cpu: match cg.dirs.get(2) {
                    Some(c) => Some(open(c.join("cpuacct.usage"), true)?),
                    None => None,
                },
                pids_current: open(cg.dirs[1].join("pids.current"), false)?,
                usage: open(d.join("memory.usage_in_bytes"), false)?,
            },
            Kind::V2 => ExecFiles {
                peak: open(d.join("memory.peak"), true)?,
                failcnt: None,
                oom: open(d.join("memory.events"), false)?,
                cpu: Some(open(d.join("cpu.stat"), false)?),
                pids_current: open(d.join("pids.current"), false)?,
                usage: open(d.join("memory.current"), false)?,
            },
        };
        Ok(Some(ExecCgroup {
            cg,
            files,
            limits,
            base_oom: 0,
            base_cpu_ns: 0,
            peak_reset: false,
        }))
    }

    /// The cgroup.procs file of each hierarchy, opened for writing by us: a process
    /// holding these joins the cgroup by writing "0" to each. The kernel checks the
    /// credentials the file was opened with (ours), so a zygote's child can move itself
    /// in without any rights of its own over the cgroup.
    pub(crate) fn procs_files(&self) -> io::Result<Vec<fs::File>> {
        self.cg
            .dirs
            .iter()
            .map(|d| {
                fs::OpenOptions::new()
                    .write(true)
                    .open(d.join("cgroup.procs"))
            })
            .collect()
    }

    /// Sets the memory and process limits, when they differ from those in force. v1's
    /// memory+swap limit may never be under the memory limit, so the order of the two
    /// writes depends on the direction.
    pub(crate) fn set_limits(&mut self, memory_bytes: u64, pids: u64) -> io::Result<()> {
        let (old_memory, old_pids) = self.limits;
        if memory_bytes != old_memory {
            let mem = memory_bytes.to_string();
            let d = &self.cg.dirs[0];
            match self.cg.kind {
                Kind::V2 => write_file(&d.join("memory.max"), &mem)?,
                Kind::V1 => {
                    let memsw = d.join("memory.memsw.limit_in_bytes");
                    let has_memsw = memsw.exists();
                    if has_memsw && memory_bytes > old_memory {
                        write_file(&memsw, &mem)?;
                    }
                    write_file(&d.join("memory.limit_in_bytes"), &mem)?;
                    if has_memsw && memory_bytes <= old_memory {
                        write_file(&memsw, &mem)?;
                    }
                }
            }
            self.limits.0 = memory_bytes;
        }
        if pids != old_pids {
            write_file(&self.pids_dir().join("pids.max"), &pids.to_string())?;
            self.limits.1 = pids;
        }
        Ok(())
    }

    fn pids_dir(&self) -> &Path {
        match self.cg.kind {
            Kind::V2 => &self.cg.dirs[0],
            Kind::V1 => &self.cg.dirs[1],
        }
    }

    /// Starts an execution: resets the peak-memory and CPU counters where the kernel
    /// allows it and records the baselines of those it does not.
    pub(crate) fn begin(&mut self) -> io::Result<()> {
        match self.cg.kind {
            Kind::V1 => {
                write_open(&self.files.peak, "0")?;
                if let Some(f) = &self.files.failcnt {
                    write_open(f, "0")?;
                }
                if let Some(f) = &self.files.cpu {
                    write_open(f, "0")?;
                }
                self.base_cpu_ns = 0;
            }
            Kind::V2 => {
                self.peak_reset = write_open(&self.files.peak, "reset").is_ok();
                self.base_cpu_ns = self.raw_cpu_ns().unwrap_or(0);
            }
        }
        self.base_oom = self.oom_kill_count();
        Ok(())
    }

    fn raw_cpu_ns(&self) -> Option<u64> {
        let f = self.files.cpu.as_ref()?;
        match self.cg.kind {
            Kind::V1 => read_open_number(f),
            Kind::V2 => keyed_value(&read_open(f)?, "usage_usec").map(|us| us.saturating_mul(1000)),
        }
    }

    /// Whether CPU time is measured.
    pub(crate) fn measures_cpu(&self) -> bool {
        self.files.cpu.is_some()
    }

    /// CPU time used in this execution so far, in nanoseconds, where known.
    pub(crate) fn cpu_ns(&self) -> Option<u64> {
        self.raw_cpu_ns()
            .map(|ns| ns.saturating_sub(self.base_cpu_ns))
    }

    fn oom_kill_count(&self) -> u64 {
        read_open(&self.files.oom)
            .and_then(|t| keyed_value(&t, "oom_kill"))
            .unwrap_or(0)
    }

    /// Peak memory and OOM kills of this execution.
    pub(crate) fn stats(&self) -> CgroupStats {
        let peak_bytes = match self.cg.kind {
            Kind::V1 => read_open_number(&self.files.peak),
            Kind::V2 if self.peak_reset => read_open_number(&self.files.peak),
            Kind::V2 => None,
        };
        CgroupStats {
            peak_bytes,
            oom_kills: self.oom_kill_count().saturating_sub(self.base_oom),
        }
    }

    /// Tasks charged to the pids controller, zombies included: 0 means every process
    /// of the execution has exited and been reaped.
    pub(crate) fn pids_current(&self) -> Option<u64> {
        read_open_number(&self.files.pids_current)
    }

    /// Memory still charged to the cgroup (page cache, kernel objects) in bytes.
    pub(crate) fn usage_bytes(&self) -> Option<u64> {
        read_open_number(&self.files.usage)
    }

    /// Asks the kernel to drop what an empty cgroup still has charged, so a later
    /// execution starts from zero and cannot be pushed to its limit by an earlier one's
    /// caches.
    pub(crate) fn reclaim(&self) {
        let d = &self.cg.dirs[0];
        let r = match self.cg.kind {
            Kind::V1 => write_file(&d.join("memory.force_empty"), "0"),
            Kind::V2 => write_file(&d.join("memory.reclaim"), "1G"),
        };
        if let Err(e) = r {
            tracing::debug!(error = %e, "reclaiming an exec cgroup");
        }
    }

    /// Process ids (in our pid namespace) of the cgroup's members.
    fn procs(&self) -> Vec<i32> {
        read_to_string(&self.pids_dir().join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// SIGKILLs every process in the cgroup, once. Safe against pid reuse: v2 kills
    /// through cgroup.kill; v1 pins each listed pid with a pidfd and signals it only if
    /// that pid is still listed afterwards (so the pidfd is a member, or already dead).
    pub(crate) fn kill_all(&self) {
        if self.cg.kind == Kind::V2 && write_file(&self.cg.dirs[0].join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        let listed = self.procs();
        if listed.is_empty() {
            return;
        }
        let pinned: Vec<(i32, Option<std::os::fd::OwnedFd>)> =
            listed.iter().map(|&p| (p, pidfd_open(p))).collect();
        let still = self.procs();
        for (pid, fd) in pinned {
            if let Some(fd) = fd {
                if still.contains(&pid) {
                    pidfd_kill(&fd);
                }
            }
        }
    }
}

/// pidfd_open(2), or None when the process is gone.
pub(crate) fn pidfd_open(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: a plain syscall; a returned descriptor is ours to own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0u32) };
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

/// SIGKILL through a pidfd; a process that is already gone is not an error.
pub(crate) fn pidfd_kill(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    // SAFETY: pidfd_send_signal on a pidfd we own cannot reach a recycled pid.
    unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            libc::SIGKILL,
            std::ptr::null::<libc::siginfo_t>(),
            0u32,
        );
    }
}

impl Drop for RunCgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            if let Err(e) = remove_cgroup_dir(d) {
                tracing::warn!(cgroup = %d.display(), error = %e, "could not remove run cgroup");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpu\\040acct rw,relatime shared:7 - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_v1_and_v2_mounts() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.v2, Some("/sys/fs/cgroup/unified".into()));
        assert_eq!(m.v1_memory, Some("/sys/fs/cgroup/memory".into()));
        assert_eq!(m.v1_pids, Some("/sys/fs/cgroup/pids".into()));
        assert_eq!(m.v1_cpuacct, Some("/sys/fs/cgroup/cpu acct".into()));
    }

    #[test]
    fn combined_v1_controllers() {
        let m = parse_mountinfo(
            "30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n",
        );
        assert_eq!(m.v1_cpuacct, Some("/sys/fs/cgroup/cpu,cpuacct".into()));
        assert_eq!(m.v1_memory, None);
        assert_eq!(m.v2, None);
    }

    #[test]
    fn keyed_files() {
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        assert_eq!(keyed_value(events, "oom_kill"), Some(1));
        assert_eq!(keyed_value(events, "oom"), Some(2));
        assert_eq!(keyed_value(events, "absent"), None);
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        assert_eq!(keyed_value(v1, "oom_kill"), Some(3));
        let stat = "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n";
        assert_eq!(keyed_value(stat, "usage_usec"), Some(1500));
    }

    #[test]
    fn hosts_probed_at_once_in_one_process_all_get_cgroups() {
        // The parent every sandbox uses by default, so the test leaves nothing new.
        let parent = "crucible";
        let mode = CgroupHost::detect(parent).mode();
        if mode == CgroupMode::None {
            eprintln!("skipped: no usable cgroup hierarchy here");
            return;
        }
        for _round in 0..5 {
            let modes: Vec<CgroupMode> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..8)
                    .map(|_| s.spawn(|| CgroupHost::detect(parent).mode()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(
                modes.iter().all(|m| *m == mode),
                "{modes:?}, alone {mode:?}"
            );
        }
    }

    /// Above the largest pid Linux can give (2^22), so never a live process.
    const DEAD: u32 = (1 << 22) + 1;

    #[test]
    fn owners_are_read_from_our_names_only() {
        assert_eq!(owner_pid("run-77.123-0", 77), Some(123));
        assert_eq!(owner_pid("run-77.123-x4-1", 77), Some(123));
        assert_eq!(owner_pid("probe-77.123-9", 77), Some(123));
        // Another pid namespace's pids mean nothing here; nor does an unknown one.
        assert_eq!(owner_pid("run-78.123-0", 77), None);
        assert_eq!(owner_pid("run-0.123-0", 0), None);
        // Names of the old form (no namespace) and everything else are not ours to sweep.
        assert_eq!(owner_pid("run-123-0", 77), None);
        assert_eq!(owner_pid("run-77.12x-0", 77), None);
        assert_eq!(owner_pid("memory.stat", 77), None);
        assert!(owner().starts_with(&format!("{}.", pid_namespace())));
    }

    #[test]
    fn sweep_removes_only_what_dead_owners_of_our_namespace_left_empty() {
        let ns = pid_namespace();
        if ns == 0 {
            eprintln!("skipped: /proc/self/ns/pid unreadable");
            return;
        }
        let dir = std::env::temp_dir().join(format!("crucible-sweep-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap();
        let names = [
            format!("run-{ns}.{DEAD}-0"),       // dead owner: goes
            format!("probe-{ns}.{DEAD}-3"),     // dead owner's probe: goes
            format!("run-{ns}.{DEAD}-x1-1"),    // dead, but not empty: stays
            format!("run-{ns}.1-0"),            // owner alive (pid 1): stays
            format!("run-{}-2", owner()),       // ours: stays
            format!("run-{}.{DEAD}-0", ns + 1), // another namespace: stays
            format!("run-{DEAD}-0"),            // the old form: stays
            "unrelated".to_string(),
        ];
        for n in &names {
            fs::create_dir(dir.join(n)).unwrap();
        }
        // Stands in for a task still in the cgroup, which makes rmdir refuse.
        fs::write(dir.join(&names[2]).join("busy"), b"").unwrap();
        assert_eq!(sweep_stale(&dir), 2);
        let left: Vec<bool> = names.iter().map(|n| dir.join(n).exists()).collect();
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(left, [false, false, true, true, true, true, true, true]);
    }

    #[test]
    fn a_dead_owners_cgroups_are_swept_from_the_real_hierarchy() {
        let parents = match CgroupHost::detect("crucible") {
            CgroupHost::V2 { parent } => vec![parent],
            CgroupHost::V1 { memory, pids, .. } => vec![memory, pids],
            CgroupHost::None => {
                eprintln!("skipped: no usable cgroup hierarchy here");
                return;
            }
        };
        let ns = pid_namespace();
        for parent in parents {
            let stale = parent.join(format!("run-{ns}.{DEAD}-sweep-test"));
            mkdir_exist_ok(&stale).unwrap();
            assert!(sweep_stale(&parent) >= 1);
            assert!(!stale.exists(), "{} left", stale.display());
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(parse_number("268435456\n"), Some(268435456));
        assert_eq!(parse_number("max\n"), Some(u64::MAX));
        assert_eq!(parse_number("garbage"), None);
    }
}
