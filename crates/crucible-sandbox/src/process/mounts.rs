//! Planning the sandbox's root: which directories, mount points, symlinks and read-only
//! binds the child must make so that each requested host path appears at the same path.
//!
//! The planning is pure (it asks a [`HostFs`] about paths), so it is tested without
//! touching the machine; the child only replays the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

/// What a host path is, without following a final symlink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostKind {
    Dir,
    /// Anything that is not a directory or symlink (file, device, socket).
    File,
    /// A symlink and its target, verbatim.
    Symlink(PathBuf),
    Missing,
}

/// The host file system as the planner sees it.
pub(crate) trait HostFs {
    /// Kind of `path` (absolute, free of `.`/`..`), not following a final symlink.
    fn kind(&self, path: &Path) -> HostKind;
}

/// The real host file system.
pub(crate) struct RealFs;

impl HostFs for RealFs {
    fn kind(&self, path: &Path) -> HostKind {
        match std::fs::symlink_metadata(path) {
            Ok(m) if m.file_type().is_symlink() => match std::fs::read_link(path) {
                Ok(t) => HostKind::Symlink(t),
                Err(_) => HostKind::Missing,
            },
            Ok(m) if m.is_dir() => HostKind::Dir,
            Ok(_) => HostKind::File,
            Err(_) => HostKind::Missing,
        }
    }
}

/// One step of building the new root, with paths absolute as seen inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PlanOp {
    /// Create a directory (its parent exists by then).
    Dir(PathBuf),
    /// Bind `path` from the host onto itself inside, read-only; `dir` says whether the
    /// mount point must be a directory or an empty file.
    Bind { path: PathBuf, dir: bool },
    /// Recreate a host symlink.
    Symlink { link: PathBuf, target: PathBuf },
}

/// Why a list of mounts cannot be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum MountPlanError {
    /// Mount paths must be absolute.
    #[error("mount path {0:?} is not absolute")]
    NotAbsolute(PathBuf),
    /// The host root itself, or a path the sandbox provides itself (/work, /proc, /dev).
    #[error("mount path {0:?} is reserved by the sandbox")]
    Reserved(PathBuf),
    /// Symlinks nest too deeply (or loop).
    #[error("too many levels of symbolic links resolving {0:?}")]
    SymlinkLoop(PathBuf),
}

/// Paths the sandbox itself provides; binds may not land on or under them.
const RESERVED: &[&str] = &["/work", "/proc", "/dev"];
/// Same limit as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: u32 = 40;

/// Result of resolving one path on the host.
struct Resolved {
    /// The path with every symlink resolved.
    canonical: PathBuf,
    dir: bool,
}

/// Resolves `path` component by component as the kernel would, recording every symlink
/// met on the way (keyed by its location, with its verbatim target). Returns None when
/// some component does not exist.
fn resolve(
    fs: &dyn HostFs,
    path: &Path,
    links: &mut BTreeMap<PathBuf, PathBuf>,
    hops: &mut u32,
    original: &Path,
) -> Result<Option<Resolved>, MountPlanError> {
    let mut cur = PathBuf::from("/");
    let mut dir = true;
    let comps: Vec<Component> = path.components().collect();
    for (i, c) in comps.iter().enumerate() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                cur.pop();
            }
            Component::Normal(name) => {
                if !dir {
                    // A file in the middle of a path: ENOTDIR, treat as missing.
                    return Ok(None);
                }
                let cand = cur.join(name);
                match fs.kind(&cand) {
                    HostKind::Missing => return Ok(None),
                    HostKind::Dir => cur = cand,
                    HostKind::File => {
                        cur = cand;
                        dir = false;
                    }
                    HostKind::Symlink(target) => {
                        *hops += 1;
                        if *hops > MAX_SYMLINKS {
                            return Err(MountPlanError::SymlinkLoop(original.to_path_buf()));
                        }
                        links.insert(cand, target.clone());
                        // A relative target is relative to the link's directory, which
                        // `cur` already is (symlink-free).
                        let mut next = if target.is_absolute() {
                            target
                        } else {
                            cur.join(target)
                        };
                        for rest in &comps[i + 1..] {
                            next.push(rest.as_os_str());
                        }
                        return resolve(fs, &next, links, hops, original);
                    }
                }
            }
        }
    }
    Ok(Some(Resolved {
        canonical: cur,
        dir,
    }))
}

fn is_reserved(p: &Path) -> bool {
    p == Path::new("/") || RESERVED.iter().any(|r| p.starts_with(r))
}

/// Plans the read-only root for `mounts`.
///
/// Every requested path is resolved on the host; symlinks met on the way (such as
/// `/bin -> usr/bin` on merged-usr systems) are recreated as symlinks, and the real
/// directory or file they lead to is bind-mounted at its real path. Paths that do not
/// exist are skipped (returned in the second list) so one profile can serve hosts that
/// lack, say, `/lib64`. Binds nested in other binds are dropped, since binds are
/// recursive. Returns the steps in an order the child can replay: directories parent
/// first, then binds, then symlinks.
pub(crate) fn plan_mounts(
    fs: &dyn HostFs,
    mounts: &[PathBuf],
) -> Result<(Vec<PlanOp>, Vec<PathBuf>), MountPlanError> {
    let mut links = BTreeMap::new();
    let mut binds: BTreeMap<PathBuf, bool> = BTreeMap::new();
    let mut missing = Vec::new();
    for m in mounts {
        if !m.is_absolute() {
            return Err(MountPlanError::NotAbsolute(m.clone()));
        }
        let mut hops = 0;
        match resolve(fs, m, &mut links, &mut hops, m)? {
            Some(r) => {
                if is_reserved(&r.canonical) {
                    return Err(MountPlanError::Reserved(m.clone()));
                }
                binds.insert(r.canonical, r.dir);
            }
            None => missing.push(m.clone()),
        }
    }
    for link in links.keys() {
        if is_reserved(link) {
            return Err(MountPlanError::Reserved(link.clone()));
        }
    }

    // A bind is recursive, so anything under another bind is already visible.
    let all: Vec<PathBuf> = binds.keys().cloned().collect();
    let covered = |p: &Path| all.iter().any(|b| b.as_path() != p && p.starts_with(b));
    binds.retain(|p, _| !covered(p));
    let under_bind = |p: &Path| binds.keys().any(|b| p.starts_with(b));
    links.retain(|l, _| !under_bind(l));

    let mut dirs = BTreeSet::new();
    for p in binds.keys().chain(links.keys()) {
        let mut a = p.parent();
        while let Some(d) = a {
            if d != Path::new("/") {
                dirs.insert(d.to_path_buf());
            }
            a = d.parent();
        }
    }
    let mut ops: Vec<PlanOp> = dirs.into_iter().map(PlanOp::Dir).collect();
    ops.extend(
        binds
            .into_iter()
            .map(|(path, dir)| PlanOp::Bind { path, dir }),
    );
    ops.extend(
        links
            .into_iter()
            .map(|(link, target)| PlanOp::Symlink { link, target }),
    );
    Ok((ops, missing))
}

/// The per-mount flags a bind remount must keep: the source mount's nosuid, nodev,
/// noexec and atime flags (as statvfs reports them), which are locked inside a user
/// namespace and make the remount fail with EPERM if dropped.
pub(crate) fn locked_mount_flags(st_flags: u64) -> libc::c_ulong {
    const MAP: &[(u64, libc::c_ulong)] = &[
        (libc::ST_RDONLY, libc::MS_RDONLY),
        (libc::ST_NOSUID, libc::MS_NOSUID),
        (libc::ST_NODEV, libc::MS_NODEV),
        (libc::ST_NOEXEC, libc::MS_NOEXEC),
        (libc::ST_NOATIME, libc::MS_NOATIME),
        (libc::ST_NODIRATIME, libc::MS_NODIRATIME),
        (libc::ST_RELATIME, libc::MS_RELATIME),
    ];
    MAP.iter()
        .filter(|(st, _)| st_flags & st != 0)
        .fold(0, |acc, (_, ms)| acc | ms)
}

/// Reads the flags of the mount holding `path` with statvfs(3).
pub(crate) fn host_mount_flags(path: &Path) -> std::io::Result<u64> {
    let st = nix::sys::statvfs::statvfs(path).map_err(std::io::Error::from)?;
    Ok(st.flags().bits())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// A fake host: a map from path to kind; absent paths are missing.
    struct FakeFs(HashMap<PathBuf, HostKind>);

    impl FakeFs {
        fn debian() -> FakeFs {
            let mut m = HashMap::new();
            for d in [
                "/usr",
                "/usr/bin",
                "/usr/lib",
                "/usr/lib64",
                "/etc",
                "/opt",
                "/opt/py",
            ] {
                m.insert(PathBuf::from(d), HostKind::Dir);
            }
            for f in ["/etc/ld.so.cache", "/usr/bin/python3.11", "/opt/py/python"] {
                m.insert(PathBuf::from(f), HostKind::File);
            }
            for (l, t) in [
                ("/bin", "usr/bin"),
                ("/lib", "usr/lib"),
                ("/lib64", "usr/lib64"),
                ("/usr/bin/python3", "python3.11"),
                ("/etc/alt", "/opt/py"),
                ("/loop", "/loop"),
            ] {
                m.insert(PathBuf::from(l), HostKind::Symlink(PathBuf::from(t)));
            }
            FakeFs(m)
        }
    }

    impl HostFs for FakeFs {
        fn kind(&self, path: &Path) -> HostKind {
            self.0.get(path).cloned().unwrap_or(HostKind::Missing)
        }
    }

    fn paths(v: &[&str]) -> Vec<PathBuf> {
        v.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn merged_usr_python_profile() {
        let (ops, missing) = plan_mounts(
            &FakeFs::debian(),
            &paths(&["/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache"]),
        )
        .unwrap();
        assert!(missing.is_empty());
        assert_eq!(
            ops,
            vec![
                PlanOp::Dir("/etc".into()),
                PlanOp::Bind {
                    path: "/etc/ld.so.cache".into(),
                    dir: false
                },
                PlanOp::Bind {
                    path: "/usr".into(),
                    dir: true
                },
                PlanOp::Symlink {
                    link: "/bin".into(),
                    target: "usr/bin".into()
                },
                PlanOp::Symlink {
                    link: "/lib".into(),
                    target: "usr/lib".into()
                },
                PlanOp::Symlink {
                    link: "/lib64".into(),
                    target: "usr/lib64".into()
                },
            ]
        );
    }

    #[test]
    fn symlink_alone_also_binds_its_target() {
        let (ops, _) = plan_mounts(&FakeFs::debian(), &paths(&["/bin"])).unwrap();
        assert_eq!(
            ops,
            vec![
                PlanOp::Dir("/usr".into()),
                PlanOp::Bind {
                    path: "/usr/bin".into(),
                    dir: true
                },
                PlanOp::Symlink {
                    link: "/bin".into(),
                    target: "usr/bin".into()
                },
            ]
        );
    }

    #[test]
    fn symlink_in_the_middle_of_a_path() {
        let (ops, _) = plan_mounts(&FakeFs::debian(), &paths(&["/etc/alt/python"])).unwrap();
        assert_eq!(
            ops,
            vec![
                PlanOp::Dir("/etc".into()),
                PlanOp::Dir("/opt".into()),
                PlanOp::Dir("/opt/py".into()),
                PlanOp::Bind {
                    path: "/opt/py/python".into(),
                    dir: false
                },
                PlanOp::Symlink {
                    link: "/etc/alt".into(),
                    target: "/opt/py".into()
                },
            ]
        );
    }

    #[test]
    fn nested_binds_and_links_inside_binds_are_dropped() {
        let (ops, _) = plan_mounts(
            &FakeFs::debian(),
            &paths(&["/usr/lib", "/usr", "/usr/bin/python3", "/usr/./lib/../bin"]),
        )
        .unwrap();
        assert_eq!(
            ops,
            vec![PlanOp::Bind {
                path: "/usr".into(),
                dir: true
            }]
        );
    }

    #[test]
    fn missing_paths_are_skipped() {
        let (ops, missing) = plan_mounts(
            &FakeFs::debian(),
            &paths(&["/nope", "/etc/ld.so.cache/x", "/usr"]),
        )
        .unwrap();
        assert_eq!(missing, paths(&["/nope", "/etc/ld.so.cache/x"]));
        assert_eq!(ops.len(), 1);
    }

    #[test]
    fn bad_requests_are_errors() {
        let fs = FakeFs::debian();
        assert_eq!(
            plan_mounts(&fs, &paths(&["usr"])),
            Err(MountPlanError::NotAbsolute("usr".into()))
        );
        for p in ["/", "/proc", "/dev", "/work", "/usr/.."] {
            let mut fs = FakeFs::debian();
            for d in ["/proc", "/dev", "/work"] {
                fs.0.insert(d.into(), HostKind::Dir);
            }
            assert_eq!(
                plan_mounts(&fs, &paths(&[p])),
                Err(MountPlanError::Reserved(p.into())),
                "{p}"
            );
        }
        assert_eq!(
            plan_mounts(&fs, &paths(&["/loop"])),
            Err(MountPlanError::SymlinkLoop("/loop".into()))
        );
    }

    #[test]
    fn statvfs_flags_map_to_mount_flags() {
        assert_eq!(locked_mount_flags(0), 0);
        assert_eq!(
            locked_mount_flags(libc::ST_NOSUID | libc::ST_NODEV | libc::ST_RELATIME),
            libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RELATIME
        );
        assert_eq!(
            locked_mount_flags(libc::ST_NOEXEC | libc::ST_NOATIME | libc::ST_RDONLY),
            libc::MS_NOEXEC | libc::MS_NOATIME | libc::MS_RDONLY
        );
    }

    #[test]
    fn real_fs_sees_this_host() {
        // The planner against the real machine: /usr must at least be a directory.
        assert_eq!(RealFs.kind(Path::new("/usr")), HostKind::Dir);
        let flags = host_mount_flags(Path::new("/usr")).unwrap();
        // Whatever the flags are, mapping them must not invent nosuid on an exec mount.
        let _ = locked_mount_flags(flags);
    }
}
