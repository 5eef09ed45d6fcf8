//! Which cgroup hierarchies this host has, detected once from
//! `/proc/self/mountinfo`: the one module that knows whether the host is v1,
//! hybrid or unified.

use std::path::{Path, PathBuf};

/// v1 controllers tupperware uses, in the order limits are written.
pub const V1_CONTROLLERS: &[&str] = &["memory", "pids", "cpu", "cpuacct", "cpuset", "freezer"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only v1 hierarchies.
    Legacy,
    /// v1 controllers plus a v2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid,
    /// One v2 tree with every controller.
    Unified,
}

/// One mounted hierarchy tupperware creates cgroups in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// Where it is mounted.
    pub mount: PathBuf,
    /// v1: the controllers it carries that tupperware uses (`cpu`,
    /// `cpuacct` when co-mounted); v2: empty (see `cgroup.controllers`).
    pub controllers: Vec<String>,
    pub v2: bool,
}

impl Hierarchy {
    /// The name `[cgroups.parents]` knows it by: its first controller, or `unified`.
    pub fn name(&self) -> &str {
        if self.v2 {
            "unified"
        } else {
            self.controllers.first().map(String::as_str).unwrap_or("")
        }
    }

    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub mode: Mode,
    /// v1 hierarchies first (in [`V1_CONTROLLERS`] order), then the v2 tree.
    pub hierarchies: Vec<Hierarchy>,
}

impl Layout {
    pub fn detect(root: &Path) -> std::io::Result<Layout> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(Self::parse(&text, root))
    }

    /// From the text of a mountinfo file: the cgroup mounts beneath `root`
    /// (`cgroups.mount`). A v1 hierarchy carrying none of our controllers
    /// (devices, blkio, name=systemd) is left out.
    pub fn parse(mountinfo: &str, root: &Path) -> Layout {
        let mut v1: Vec<Hierarchy> = Vec::new();
        let mut v2 = None;
        for line in mountinfo.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let left: Vec<&str> = left.split(' ').collect();
            let right: Vec<&str> = right.split(' ').collect();
            let (Some(mount), Some(fstype), Some(opts)) =
                (left.get(4), right.first(), right.get(2))
            else {
                continue;
            };
            // Only the whole hierarchy (root "/"), beneath the configured mount.
            let mount = PathBuf::from(unescape(mount));
            if left.get(3) != Some(&"/") || !mount.starts_with(root) {
                continue;
            }
            match *fstype {
                "cgroup2" => v2 = Some(mount),
                "cgroup" => {
                    let opts: Vec<&str> = opts.split(',').collect();
                    let controllers: Vec<String> = V1_CONTROLLERS
                        .iter()
                        .filter(|c| opts.contains(c))
                        .map(|c| c.to_string())
                        .collect();
                    if !controllers.is_empty() && !v1.iter().any(|h| h.controllers == controllers) {
                        v1.push(Hierarchy {
                            mount,
                            controllers,
                            v2: false,
                        });
                    }
                }
                _ => {}
            }
        }
        v1.sort_by_key(|h| {
            V1_CONTROLLERS
                .iter()
                .position(|c| h.has(c))
                .unwrap_or(usize::MAX)
        });
        let mode = match (v1.is_empty(), &v2) {
            (true, Some(_)) => Mode::Unified,
            (false, Some(_)) => Mode::Hybrid,
            _ => Mode::Legacy,
        };
        let mut hierarchies = v1;
        hierarchies.extend(v2.map(|mount| Hierarchy {
            mount,
            controllers: Vec::new(),
            v2: true,
        }));
        Layout { mode, hierarchies }
    }

    /// The hierarchy that carries `controller`'s limits: a v1 one, or the
    /// v2 tree on a unified host.
    pub fn for_controller(&self, controller: &str) -> Option<&Hierarchy> {
        match self.mode {
            Mode::Unified => self.hierarchies.iter().find(|h| h.v2),
            _ => self.hierarchies.iter().find(|h| !h.v2 && h.has(controller)),
        }
    }
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A process's cgroup in each hierarchy, from `/proc/<pid>/cgroup`:
/// `(controllers or "" for v2, path)`.
pub fn parse_proc_cgroup(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.splitn(3, ':');
            let _id = it.next()?;
            Some((it.next()?.to_string(), it.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This development machine's mounts.
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host() {
        let l = Layout::parse(HYBRID, Path::new("/sys/fs/cgroup"));
        assert_eq!(l.mode, Mode::Hybrid);
        let names: Vec<&str> = l.hierarchies.iter().map(Hierarchy::name).collect();
        assert_eq!(
            names,
            ["memory", "pids", "cpu", "cpuacct", "cpuset", "freezer", "unified"]
        );
        assert_eq!(
            l.for_controller("memory").unwrap().mount,
            Path::new("/sys/fs/cgroup/memory")
        );
        assert!(l.for_controller("blkio").is_none());
        // Another configured mount sees nothing.
        assert_eq!(
            Layout::parse(HYBRID, Path::new("/elsewhere")).hierarchies,
            []
        );
    }

    #[test]
    fn unified_and_legacy_hosts() {
        let unified = "30 23 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        let l = Layout::parse(unified, Path::new("/sys/fs/cgroup"));
        assert_eq!(l.mode, Mode::Unified);
        assert_eq!(l.for_controller("memory").unwrap().name(), "unified");
        let legacy = "\
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
";
        let l = Layout::parse(legacy, Path::new("/sys/fs/cgroup"));
        assert_eq!(l.mode, Mode::Legacy);
        let cpu = l.for_controller("cpuacct").unwrap();
        assert_eq!(cpu.name(), "cpu");
        assert_eq!(cpu.mount, Path::new("/sys/fs/cgroup/cpu,cpuacct"));
        // A bind mount of a sub-cgroup (a container's view) is not a hierarchy.
        let sub = "50 1 0:32 /x /mnt/m rw - cgroup cgroup rw,memory\n";
        assert_eq!(Layout::parse(sub, Path::new("/")).hierarchies, []);
    }

    #[test]
    fn proc_cgroup() {
        let v = parse_proc_cgroup("4:memory:/process_api/abc\n0::/\n1:cpu,cpuacct:/x:y\n");
        assert_eq!(v[0], ("memory".into(), "/process_api/abc".into()));
        assert_eq!(v[1], ("".into(), "/".into()));
        assert_eq!(v[2], ("cpu,cpuacct".into(), "/x:y".into()));
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
