//! The cgroup directories of a user and a container in every hierarchy,
//! and effective uid 0 around the work on them.

use std::io::ErrorKind as Io;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use caps::Capability;

use crate::error::{Error, Result};
use crate::mode::{Hierarchy, Layout};

/// Run `f` with effective uid 0 (`CAP_SETUID` raised just for the switch),
/// then go back to the caller's uid. With effective uid 0 everything the
/// helper creates in cgroupfs is root's from the start; the kernel raises
/// the effective set to the permitted one (`CAP_SETUID` only) meanwhile and
/// clears it again on the way back (`PR_SET_KEEPCAPS` keeps the permitted
/// set for the next request).
pub fn as_root<T>(caller_uid: u32, f: impl FnOnce() -> Result<T>) -> Result<T> {
    if caller_uid == 0 {
        // Already uid 0; moving a process into a v1 cpuset still needs
        // `CAP_SYS_NICE` over it (the hygiene cleared the effective set).
        return crate::CAPS.with_caps(&[Capability::CAP_SYS_NICE], f);
    }
    crate::CAPS.with_caps(&[Capability::CAP_SETUID, Capability::CAP_SYS_NICE], || {
        // SAFETY: prctl and setresuid on this (single-threaded) process.
        unsafe {
            if libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0
                || libc::setresuid(u32::MAX, 0, u32::MAX) != 0
            {
                return Err(Error::sys("become uid 0", std::io::Error::last_os_error()));
            }
        }
        let out = f();
        // SAFETY: as above; the real uid stays the caller's throughout.
        if unsafe { libc::setresuid(u32::MAX, caller_uid, u32::MAX) } != 0 {
            // Never go on with uid 0.
            std::process::abort();
        }
        out
    })
}

/// The paths of one hierarchy: the configured parent, the user's cgroup
/// (their totals) and the container's.
#[derive(Debug, Clone)]
pub struct Paths {
    pub hierarchy: Hierarchy,
    pub parent: PathBuf,
    pub user: PathBuf,
}

impl Paths {
    pub fn container(&self, id: &str) -> PathBuf {
        self.user.join(id)
    }
}

/// Every hierarchy's paths for `uid`.
pub fn paths(layout: &Layout, cfg: &tupper_config::cgroups::CgroupsConfig, uid: u32) -> Vec<Paths> {
    layout
        .hierarchies
        .iter()
        .map(|h| {
            let rel: PathBuf = cfg
                .parent_of(h.name())
                .components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .collect();
            let parent = h.mount.join(rel);
            Paths {
                hierarchy: h.clone(),
                user: parent.join(format!("user-{uid}")),
                parent,
            }
        })
        .collect()
}

/// Create `dir` and any missing parents below `mount`; returns those made,
/// outermost first. v1 cpuset cgroups get their parent's CPUs and memory
/// nodes (a new one has none, and nobody could join it).
pub fn make_dirs(mount: &Path, dir: &Path, cpuset: bool) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    let mut missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|p| *p != mount && p.starts_with(mount))
        .filter(|p| !p.exists())
        .collect();
    missing.reverse();
    for p in missing {
        match std::fs::create_dir(p) {
            Ok(()) => made.push(p.to_path_buf()),
            Err(e) if e.kind() == Io::AlreadyExists => continue,
            Err(e) => return Err(Error::sys(format!("create cgroup {}", p.display()), e)),
        }
        if cpuset {
            if let (Some(up), true) = (p.parent(), p.join("cpuset.cpus").exists()) {
                for f in ["cpuset.cpus", "cpuset.mems"] {
                    let v = read_trim(&up.join(f)).unwrap_or_default();
                    std::fs::write(p.join(f), &v)
                        .map_err(|e| Error::sys(format!("set {f} of {}", p.display()), e))?;
                }
            }
        }
    }
    Ok(made)
}

pub fn read_trim(p: &Path) -> Option<String> {
    std::fs::read_to_string(p)
        .ok()
        .map(|s| s.trim().to_string())
}

/// Remove a cgroup once its last process is gone: dying processes leave
/// it within moments, so `EBUSY` is retried for up to `wait`.
pub fn remove_dir(dir: &Path, wait: Duration) -> Result<bool> {
    let deadline = Instant::now() + wait;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == Io::NotFound => return Ok(false),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::sys(format!("remove cgroup {}", dir.display()), e)),
        }
    }
}

/// Move `pid` into the cgroup `dir`.
pub fn place(dir: &Path, pid: i32) -> Result<()> {
    std::fs::write(dir.join("cgroup.procs"), pid.to_string())
        .map_err(|e| Error::sys(format!("move pid {pid} into {}", dir.display()), e))
}

/// Sub-cgroups of `dir` (a user's containers).
pub fn children(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_per_hierarchy() {
        let layout = Layout::parse(
            "35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n",
            Path::new("/sys/fs/cgroup"),
        );
        let cfg = tupper_config::SystemConfig::parse(
            "[cgroups]\nparent = \"/tw\"\n[cgroups.parents]\nmemory = \"/p/h/tw\"\n",
        )
        .unwrap()
        .cgroups;
        let p = paths(&layout, &cfg, 1001);
        assert_eq!(
            p[0].user,
            Path::new("/sys/fs/cgroup/memory/p/h/tw/user-1001")
        );
        assert_eq!(
            p[1].container("ab"),
            Path::new("/sys/fs/cgroup/pids/tw/user-1001/ab")
        );
    }

    #[test]
    fn dirs_in_a_fake_tree() {
        let d = tempfile::tempdir().unwrap();
        let mount = d.path();
        std::fs::write(mount.join("cpuset.cpus"), "0-3\n").unwrap();
        std::fs::write(mount.join("cpuset.mems"), "0\n").unwrap();
        let made = make_dirs(mount, &mount.join("a/b"), false).unwrap();
        assert_eq!(made, [mount.join("a"), mount.join("a/b")]);
        assert!(make_dirs(mount, &mount.join("a/b"), false)
            .unwrap()
            .is_empty());
        assert_eq!(children(&mount.join("a")), ["b"]);
        assert!(remove_dir(&mount.join("a/b"), Duration::ZERO).unwrap());
        assert!(!remove_dir(&mount.join("a/b"), Duration::ZERO).unwrap());
    }
}
