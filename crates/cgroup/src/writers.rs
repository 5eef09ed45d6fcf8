//! The limit files of a cgroup, v1 and v2: what to write where. Pure
//! functions of the limits and of which files a cgroup has, so the unit
//! tests check them against a fake cgroupfs tree in a temporary directory.

use std::path::Path;

use proto::cgroup::CgroupLimits;

use crate::error::{Error, Result};
use crate::mode::Hierarchy;

/// CFS period used for `--cpus` (podman's).
pub const CPU_PERIOD_US: u64 = 100_000;

/// One file to write: `(file name, value)`.
pub type Write = (&'static str, String);

/// v1 `--cpu-shares` to v2 `cpu.weight` (the kernel's own conversion, as
/// used when v1 shares are asked on a v2 host).
pub fn shares_to_weight(shares: u64) -> u64 {
    (1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142).clamp(1, 10_000)
}

/// v2 `--cpu-weight` to v1 `cpu.shares`.
pub fn weight_to_shares(weight: u64) -> u64 {
    2 + ((weight.clamp(1, 10_000) - 1) * 262_142) / 9999
}

/// What a container's (or a user's) limits write into one hierarchy.
/// `has(file)` says whether the cgroup has a file (`memory.memsw.*` only
/// with swap accounting); `parent_cpuset` is the parent's (cpus, mems) for
/// v1 cpuset, which a new cgroup must be given before a process can join.
pub fn writes(
    h: &Hierarchy,
    l: &CgroupLimits,
    has: &dyn Fn(&str) -> bool,
    parent_cpuset: Option<(String, String)>,
) -> Result<Vec<Write>> {
    let mut w: Vec<Write> = Vec::new();
    if h.v2 {
        if let Some(m) = l.memory {
            w.push(("memory.max", m.to_string()));
        }
        if let Some(s) = l.memory_swap {
            let swap = match (s, l.memory) {
                (u64::MAX, _) => "max".to_string(),
                (s, Some(m)) => s.saturating_sub(m).to_string(),
                (s, None) => s.to_string(),
            };
            w.push(("memory.swap.max", swap));
        }
        if let Some(p) = l.pids {
            w.push(("pids.max", p.to_string()));
        }
        if let Some(c) = l.millicpus {
            w.push((
                "cpu.max",
                format!("{} {CPU_PERIOD_US}", c * CPU_PERIOD_US / 1000),
            ));
        }
        let weight = l.cpu_weight.or(l.cpu_shares.map(shares_to_weight));
        if let Some(wt) = weight {
            w.push(("cpu.weight", wt.to_string()));
        }
        if let Some(c) = &l.cpuset_cpus {
            w.push(("cpuset.cpus", c.clone()));
        }
        // v2 files of controllers the tree does not offer are missing.
        for (file, _) in &w {
            if !has(file) {
                return Err(Error::Unsupported(format!(
                    "this host's cgroup v2 tree has no {} controller enabled for tupperware ({file})",
                    file.split('.').next().unwrap_or(file)
                )));
            }
        }
        return Ok(w);
    }
    if h.has("memory") {
        if let Some(m) = l.memory {
            w.push(("memory.limit_in_bytes", m.to_string()));
        }
        if let Some(s) = l.memory_swap {
            if has("memory.memsw.limit_in_bytes") {
                let v = if s == u64::MAX {
                    "-1".into()
                } else {
                    s.to_string()
                };
                w.push(("memory.memsw.limit_in_bytes", v));
            } else if s != u64::MAX {
                return Err(Error::Unsupported(
                    "--memory-swap needs swap accounting, which this host's kernel does not do \
                     (memory.memsw.limit_in_bytes is missing)"
                        .into(),
                ));
            }
        }
    }
    if h.has("pids") {
        if let Some(p) = l.pids {
            w.push(("pids.max", p.to_string()));
        }
    }
    if h.has("cpu") {
        if let Some(c) = l.millicpus {
            w.push(("cpu.cfs_period_us", CPU_PERIOD_US.to_string()));
            w.push(("cpu.cfs_quota_us", (c * CPU_PERIOD_US / 1000).to_string()));
        }
        let shares = l.cpu_shares.or(l.cpu_weight.map(weight_to_shares));
        if let Some(s) = shares {
            w.push(("cpu.shares", s.to_string()));
        }
    }
    if h.has("cpuset") {
        if let Some((cpus, mems)) = parent_cpuset {
            w.push(("cpuset.cpus", l.cpuset_cpus.clone().unwrap_or(cpus)));
            w.push(("cpuset.mems", mems));
        }
    }
    Ok(w)
}

/// Write `writes` into the cgroup directory `dir`, in order.
pub fn apply(dir: &Path, writes: &[Write]) -> Result<()> {
    for (file, value) in writes {
        write_one(&dir.join(file), file, value)?;
    }
    Ok(())
}

/// One write of [`apply`] or [`apply_undoable`]. A memory limit the kernel
/// cannot reclaim down to (`EBUSY`) is reported as such.
fn write_one(path: &Path, file: &str, value: &str) -> Result<()> {
    std::fs::write(path, value).map_err(|source| {
        let what = if source.raw_os_error() == Some(libc::EBUSY) && file.starts_with("memory.") {
            format!(
                "set {file} to {value}: the container uses more memory than that now and the \
                 kernel could not reclaim enough"
            )
        } else {
            format!("set {file} to {value}")
        };
        Error::Rejected { what, source }
    })
}

/// `update`: the writes of `asked` (only its `Some` fields) into one
/// existing container cgroup, checked and ordered against what the files
/// hold now (`current(file)`). v1: the memory limit may never exceed the
/// memory plus swap limit, so when the new memory limit is above the
/// current `memory.memsw.limit_in_bytes`, memsw is written first; else
/// memory first. v2: `memory.swap.max` is swap alone, so `--memory-swap`
/// without `--memory` is taken relative to the current `memory.max`.
pub fn update_writes(
    h: &Hierarchy,
    asked: &CgroupLimits,
    has: &dyn Fn(&str) -> bool,
    current: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Write>> {
    let number = |file: &str| current(file).and_then(|v| v.parse::<u64>().ok());
    let mut l = asked.clone();
    if let (Some(m), Some(s)) = (l.memory, l.memory_swap) {
        if s < m {
            return Err(Error::Invalid(format!(
                "--memory-swap {s} is less than --memory {m}: it counts memory and swap together"
            )));
        }
    }
    let mut drop_memory = false;
    if h.v2 {
        if let (None, Some(s)) = (l.memory, l.memory_swap) {
            if s != u64::MAX {
                let Some(m) = number("memory.max") else {
                    return Err(Error::Invalid(
                        "--memory-swap needs a memory limit: give --memory too".into(),
                    ));
                };
                if s < m {
                    return Err(Error::Invalid(format!(
                        "--memory-swap {s} is less than the container's memory limit {m}: \
                         it counts memory and swap together"
                    )));
                }
                // Only to compute swap alone; memory.max is not written.
                l.memory = Some(m);
                drop_memory = true;
            }
        }
    }
    let cpuset = l
        .cpuset_cpus
        .is_some()
        .then(|| (String::new(), String::new()));
    let mut w = writes(h, &l, has, cpuset)?;
    // Only the CPUs change; the memory nodes keep theirs.
    w.retain(|(f, _)| *f != "cpuset.mems" && !(drop_memory && *f == "memory.max"));
    if !h.v2 && has("memory.memsw.limit_in_bytes") {
        let memsw = |v: u64| if v == u64::MAX { None } else { Some(v) };
        let (m0, s0) = (
            number("memory.limit_in_bytes"),
            number("memory.memsw.limit_in_bytes"),
        );
        match (asked.memory, asked.memory_swap.map(memsw)) {
            (Some(m1), None) => {
                if let Some(s0) = s0.filter(|s0| m1 > *s0) {
                    return Err(Error::Invalid(format!(
                        "--memory {m1} is above the container's memory plus swap limit {s0}: \
                         give --memory-swap too"
                    )));
                }
            }
            (None, Some(Some(s1))) => {
                if let Some(m0) = m0.filter(|m0| s1 < *m0) {
                    return Err(Error::Invalid(format!(
                        "--memory-swap {s1} is less than the container's memory limit {m0}: \
                         it counts memory and swap together"
                    )));
                }
            }
            (Some(m1), Some(_)) if s0.is_some_and(|s0| m1 > s0) => {
                // Raise memsw first, so memory never exceeds it.
                let first = |f: &&str| *f == "memory.memsw.limit_in_bytes";
                if let Some(i) = w.iter().position(|(f, _)| first(f)) {
                    let memsw = w.remove(i);
                    let at = w
                        .iter()
                        .position(|(f, _)| *f == "memory.limit_in_bytes")
                        .unwrap_or(0);
                    w.insert(at, memsw);
                }
            }
            _ => {}
        }
    }
    Ok(w)
}

/// Files written by [`apply_undoable`] with the values they held before.
#[derive(Debug, Default)]
pub struct Undo(Vec<(std::path::PathBuf, String)>);

impl Undo {
    /// Write the old values back, last written first; the files that could
    /// not be restored are returned.
    pub fn restore(self) -> Vec<std::path::PathBuf> {
        let mut failed = Vec::new();
        for (file, old) in self.0.into_iter().rev() {
            if std::fs::write(&file, &old).is_err() {
                failed.push(file);
            }
        }
        failed
    }
}

/// [`apply`], remembering each file's old value in `undo` before it is
/// overwritten.
pub fn apply_undoable(dir: &Path, writes: &[Write], undo: &mut Undo) -> Result<()> {
    for (file, value) in writes {
        let path = dir.join(file);
        let old = std::fs::read_to_string(&path)
            .map(|s| s.trim().to_string())
            .map_err(|e| Error::sys(format!("read {}", path.display()), e))?;
        write_one(&path, file, value)?;
        undo.0.push((path, old));
    }
    Ok(())
}

/// The number after `key` in a flat-keyed file (`memory.events`,
/// `memory.oom_control`, `cpu.stat`).
pub fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn v1(c: &[&str]) -> Hierarchy {
        Hierarchy {
            mount: PathBuf::from("/x"),
            controllers: c.iter().map(|s| s.to_string()).collect(),
            v2: false,
        }
    }

    fn v2() -> Hierarchy {
        Hierarchy {
            mount: PathBuf::from("/x"),
            controllers: vec![],
            v2: true,
        }
    }

    fn all(_: &str) -> bool {
        true
    }

    fn limits() -> CgroupLimits {
        CgroupLimits {
            memory: Some(64 << 20),
            memory_swap: Some(128 << 20),
            pids: Some(50),
            millicpus: Some(500),
            cpu_shares: Some(512),
            cpu_weight: None,
            cpuset_cpus: Some("0".into()),
        }
    }

    /// A fake cgroup directory holding the files a kernel would make.
    fn fake(files: &[&str]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for f in files {
            std::fs::write(d.path().join(f), "").unwrap();
        }
        d
    }

    fn read(d: &tempfile::TempDir, f: &str) -> String {
        std::fs::read_to_string(d.path().join(f)).unwrap()
    }

    #[test]
    fn v1_writers() {
        let l = limits();
        let m = writes(&v1(&["memory"]), &l, &all, None).unwrap();
        assert_eq!(
            m,
            [
                ("memory.limit_in_bytes", "67108864".to_string()),
                ("memory.memsw.limit_in_bytes", "134217728".to_string())
            ]
        );
        let c = writes(&v1(&["cpu", "cpuacct"]), &l, &all, None).unwrap();
        assert_eq!(
            c,
            [
                ("cpu.cfs_period_us", "100000".to_string()),
                ("cpu.cfs_quota_us", "50000".to_string()),
                ("cpu.shares", "512".to_string())
            ]
        );
        let s = writes(
            &v1(&["cpuset"]),
            &CgroupLimits::default(),
            &all,
            Some(("0-1".into(), "0".into())),
        )
        .unwrap();
        assert_eq!(
            s,
            [
                ("cpuset.cpus", "0-1".to_string()),
                ("cpuset.mems", "0".to_string())
            ]
        );
        let p = writes(&v1(&["pids"]), &l, &all, None).unwrap();
        assert_eq!(p, [("pids.max", "50".to_string())]);
        // Nothing asked, nothing written (freezer, cpuacct only).
        assert!(writes(&v1(&["freezer"]), &l, &all, None)
            .unwrap()
            .is_empty());
        // Swap without swap accounting is refused; unlimited swap is a no-op.
        let no_memsw = |f: &str| !f.starts_with("memory.memsw");
        assert!(writes(&v1(&["memory"]), &l, &no_memsw, None).is_err());
        let unlimited = CgroupLimits {
            memory_swap: Some(u64::MAX),
            ..l.clone()
        };
        assert_eq!(
            writes(&v1(&["memory"]), &unlimited, &no_memsw, None)
                .unwrap()
                .len(),
            1
        );

        // Against a fake tree.
        let d = fake(&["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"]);
        apply(d.path(), &m).unwrap();
        assert_eq!(read(&d, "memory.limit_in_bytes"), "67108864");
        assert_eq!(read(&d, "memory.memsw.limit_in_bytes"), "134217728");
    }

    #[test]
    fn v2_writers() {
        let l = limits();
        let w = writes(&v2(), &l, &all, None).unwrap();
        assert_eq!(
            w,
            [
                ("memory.max", "67108864".to_string()),
                ("memory.swap.max", "67108864".to_string()),
                ("pids.max", "50".to_string()),
                ("cpu.max", "50000 100000".to_string()),
                ("cpu.weight", shares_to_weight(512).to_string()),
                ("cpuset.cpus", "0".to_string()),
            ]
        );
        let d = fake(&[
            "memory.max",
            "memory.swap.max",
            "pids.max",
            "cpu.max",
            "cpu.weight",
            "cpuset.cpus",
        ]);
        apply(d.path(), &w).unwrap();
        assert_eq!(read(&d, "cpu.max"), "50000 100000");
        assert_eq!(read(&d, "memory.swap.max"), "67108864");
        // Unlimited swap; a weight asked directly wins over shares.
        let w = writes(
            &v2(),
            &CgroupLimits {
                memory_swap: Some(u64::MAX),
                cpu_weight: Some(300),
                ..Default::default()
            },
            &all,
            None,
        )
        .unwrap();
        assert_eq!(
            w,
            [
                ("memory.swap.max", "max".to_string()),
                ("cpu.weight", "300".to_string())
            ]
        );
        // A controller the tree lacks (this host's unified mount has none).
        let e = writes(&v2(), &l, &|f| !f.starts_with("memory"), None).unwrap_err();
        assert!(e.to_string().contains("no memory controller"), "{e}");
        // Writing a file that is not there fails (the kernel's refusal).
        let d = fake(&[]);
        let d2 = d.path().join("gone");
        assert!(apply(&d2, &[("pids.max", "1".into())]).is_err());
    }

    /// A fake cgroup directory with files holding values.
    fn fake_with(files: &[(&str, &str)]) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for (f, v) in files {
            std::fs::write(d.path().join(f), v).unwrap();
        }
        d
    }

    fn now(d: &tempfile::TempDir) -> impl Fn(&str) -> Option<String> + '_ {
        move |f| crate::tree::read_trim(&d.path().join(f))
    }

    fn mem(m: u64, s: Option<u64>) -> CgroupLimits {
        CgroupLimits {
            memory: Some(m),
            memory_swap: s,
            ..Default::default()
        }
    }

    #[test]
    fn v1_update_orders_memory_and_memsw() {
        let d = fake_with(&[
            ("memory.limit_in_bytes", "67108864\n"),
            ("memory.memsw.limit_in_bytes", "134217728\n"),
            ("pids.max", "max\n"),
        ]);
        let h = v1(&["memory"]);
        let files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes"];
        let order = |l: &CgroupLimits| {
            update_writes(&h, l, &all, &now(&d))
                .unwrap()
                .into_iter()
                .map(|(f, _)| f)
                .collect::<Vec<_>>()
        };
        // Lowering both: memory first; raising memory above the current
        // memsw: memsw first.
        assert_eq!(order(&mem(32 << 20, Some(32 << 20))), files);
        assert_eq!(
            order(&mem(256 << 20, Some(512 << 20))),
            [files[1], files[0]]
        );
        // Unlimited swap with more memory: memsw (-1) first.
        assert_eq!(order(&mem(256 << 20, Some(u64::MAX))), [files[1], files[0]]);
        // Memory alone above the current memsw, memsw alone below the
        // current memory, memsw below memory: refused, nothing written.
        for bad in [
            mem(256 << 20, None),
            CgroupLimits {
                memory_swap: Some(32 << 20),
                ..Default::default()
            },
            mem(64 << 20, Some(32 << 20)),
        ] {
            let e = update_writes(&h, &bad, &all, &now(&d)).unwrap_err();
            assert!(matches!(e, Error::Invalid(_)), "{e}");
        }
        // Memory alone within memsw: just memory.
        assert_eq!(order(&mem(100 << 20, None)), [files[0]]);
        // Without swap accounting: memory alone, any size.
        let no_memsw = |f: &str| !f.starts_with("memory.memsw");
        let w = update_writes(&h, &mem(256 << 20, None), &no_memsw, &now(&d)).unwrap();
        assert_eq!(w, [("memory.limit_in_bytes", (256u64 << 20).to_string())]);
        // Only what is asked is written (pids alone touches no memory file).
        let p = CgroupLimits {
            pids: Some(50),
            ..Default::default()
        };
        assert!(update_writes(&h, &p, &all, &now(&d)).unwrap().is_empty());
        assert_eq!(
            update_writes(&v1(&["pids"]), &p, &all, &now(&d)).unwrap(),
            [("pids.max", "50".to_string())]
        );
        // cpuset: the CPUs only, the memory nodes are left alone.
        let c = CgroupLimits {
            cpuset_cpus: Some("0".into()),
            ..Default::default()
        };
        assert_eq!(
            update_writes(&v1(&["cpuset"]), &c, &all, &now(&d)).unwrap(),
            [("cpuset.cpus", "0".to_string())]
        );
    }

    #[test]
    fn v2_update_against_a_fake_tree() {
        let d = fake_with(&[
            ("memory.max", "67108864\n"),
            ("memory.swap.max", "max\n"),
            ("pids.max", "100\n"),
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            ("cpuset.cpus", "\n"),
        ]);
        let h = v2();
        // Swap alone is relative to the current memory.max, which stays.
        let w = update_writes(
            &h,
            &CgroupLimits {
                memory_swap: Some(96 << 20),
                ..Default::default()
            },
            &all,
            &now(&d),
        )
        .unwrap();
        assert_eq!(w, [("memory.swap.max", (32u64 << 20).to_string())]);
        // Below the current memory: refused.
        assert!(update_writes(
            &h,
            &CgroupLimits {
                memory_swap: Some(32 << 20),
                ..Default::default()
            },
            &all,
            &now(&d),
        )
        .is_err());
        // Memory, pids and CPUs; applied, then undone.
        let l = CgroupLimits {
            memory: Some(32 << 20),
            pids: Some(50),
            millicpus: Some(500),
            ..Default::default()
        };
        let w = update_writes(&h, &l, &all, &now(&d)).unwrap();
        assert_eq!(
            w,
            [
                ("memory.max", (32u64 << 20).to_string()),
                ("pids.max", "50".to_string()),
                ("cpu.max", "50000 100000".to_string()),
            ]
        );
        let mut undo = Undo::default();
        apply_undoable(d.path(), &w, &mut undo).unwrap();
        assert_eq!(read(&d, "pids.max"), "50");
        assert_eq!(read(&d, "cpu.max"), "50000 100000");
        assert!(undo.restore().is_empty());
        assert_eq!(read(&d, "memory.max"), "67108864");
        assert_eq!(read(&d, "pids.max"), "100");
        assert_eq!(read(&d, "cpu.max"), "max 100000");
        // A write that fails midway: the ones before it are restored by
        // the caller through the undo list.
        let mut undo = Undo::default();
        let w = vec![
            ("pids.max", "10".to_string()),
            ("cpu.weight.nonexistent", "1".to_string()),
        ];
        assert!(apply_undoable(d.path(), &w, &mut undo).is_err());
        assert_eq!(read(&d, "pids.max"), "10");
        assert!(undo.restore().is_empty());
        assert_eq!(read(&d, "pids.max"), "100");
    }

    #[test]
    fn conversions_and_keyed_files() {
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
        let events = "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n";
        assert_eq!(keyed(events, "oom_kill"), Some(1));
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n";
        assert_eq!(keyed(v1, "oom_kill"), Some(2));
        assert_eq!(keyed(v1, "nope"), None);
    }
}
