//! Issue 9: `stats`: memory, CPU and pids of running containers, read by
//! the unprivileged supervisor straight from their cgroups (cgroup files
//! are world-readable; the container's cgroups are found through its init's
//! `/proc/<pid>/cgroup`, the init held by a pidfd).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::containers::Format;
use crate::error::{Error, Result};
use crate::records::{Record, Records, Status};

/// Where each hierarchy is mounted: v1 controller name → mount, `""` → v2.
fn mounts(mountinfo: &str) -> BTreeMap<String, PathBuf> {
    let mut m = BTreeMap::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.get(3) != Some(&"/") {
            continue;
        }
        let (Some(mount), Some(fs), Some(opts)) = (left.get(4), right.first(), right.get(2)) else {
            continue;
        };
        match *fs {
            "cgroup2" => {
                m.entry(String::new())
                    .or_insert_with(|| PathBuf::from(mount));
            }
            "cgroup" => {
                for o in opts.split(',') {
                    if ["memory", "pids", "cpuacct", "cpu"].contains(&o) {
                        m.entry(o.to_string())
                            .or_insert_with(|| PathBuf::from(mount));
                    }
                }
            }
            _ => {}
        }
    }
    m
}

/// The files `stats` reads for one container.
#[derive(Debug, Default, Clone, PartialEq)]
struct Files {
    memory: Option<(PathBuf, bool)>,
    cpu: Option<(PathBuf, bool)>,
    pids: Option<PathBuf>,
}

fn files_of(proc_cgroup: &str, mounts: &BTreeMap<String, PathBuf>) -> Files {
    let mut f = Files::default();
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let rel = path.trim_start_matches('/');
        for c in ctrls.split(',') {
            let Some(m) = mounts.get(c) else { continue };
            let dir = m.join(rel);
            match c {
                "" => v2 = Some(dir),
                "memory" => f.memory = Some((dir, false)),
                "cpuacct" => f.cpu = Some((dir, false)),
                "pids" => f.pids = Some(dir),
                _ => {}
            }
        }
    }
    // A unified host: everything in the v2 tree, if its controllers are there.
    if let Some(d) = v2 {
        if f.memory.is_none() && d.join("memory.current").exists() {
            f.memory = Some((d.clone(), true));
        }
        if f.cpu.is_none() {
            f.cpu = Some((d.clone(), true));
        }
        if f.pids.is_none() && d.join("pids.current").exists() {
            f.pids = Some(d);
        }
    }
    f
}

fn read_u64(p: &Path) -> Option<u64> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// CPU time used so far, nanoseconds.
fn cpu_ns(f: &Files) -> Option<u64> {
    let (d, v2) = f.cpu.as_ref()?;
    if *v2 {
        let text = std::fs::read_to_string(d.join("cpu.stat")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("usage_usec "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|us| us * 1000)
    } else {
        read_u64(&d.join("cpuacct.usage"))
    }
}

/// (usage, limit) in bytes; a limit of "max" or v1's huge number is `None`.
fn memory(f: &Files) -> (Option<u64>, Option<u64>) {
    let Some((d, v2)) = &f.memory else {
        return (None, None);
    };
    let (usage, limit) = if *v2 {
        ("memory.current", "memory.max")
    } else {
        ("memory.usage_in_bytes", "memory.limit_in_bytes")
    };
    let limit = read_u64(&d.join(limit)).filter(|l| *l < (1 << 62));
    (read_u64(&d.join(usage)), limit)
}

#[derive(Debug, Clone, serde::Serialize)]
struct Row {
    id: String,
    name: String,
    cpu_percent: f64,
    memory_usage: u64,
    memory_limit: Option<u64>,
    pids: u64,
}

fn human(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < units.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b}B")
    } else {
        format!("{v:.2}{}", units[i])
    }
}

fn running(state: &Records, keys: &[String]) -> Result<Vec<Record>> {
    if keys.is_empty() {
        return Ok(state
            .load_all()?
            .records
            .into_iter()
            .filter(|r| r.status == Status::Running && r.init.is_some())
            .collect());
    }
    keys.iter()
        .map(|k| {
            let r = state.find(k)?;
            if r.status != Status::Running || r.init.is_none() {
                return Err(Error::user(format!("container {k} is not running")));
            }
            Ok(r)
        })
        .collect()
}

/// One sample of every container over `interval`.
fn sample(recs: &[Record], interval: Duration) -> Vec<Row> {
    let mounts = mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default());
    let targets: Vec<(&Record, Files)> = recs
        .iter()
        .filter_map(|r| {
            let init = r.init?;
            // The pidfd proves the pid is still the recorded init.
            let pidfd = init.pidfd()?;
            let text = std::fs::read_to_string(format!("/proc/{}/cgroup", init.pid)).ok()?;
            pidfd.is_alive().then(|| (r, files_of(&text, &mounts)))
        })
        .collect();
    let before: Vec<Option<u64>> = targets.iter().map(|(_, f)| cpu_ns(f)).collect();
    let t0 = Instant::now();
    std::thread::sleep(interval);
    let elapsed = t0.elapsed().as_nanos().max(1) as f64;
    targets
        .iter()
        .zip(before)
        .map(|((r, f), b)| {
            let cpu = match (b, cpu_ns(f)) {
                (Some(b), Some(a)) => a.saturating_sub(b) as f64 / elapsed * 100.0,
                _ => 0.0,
            };
            let (usage, limit) = memory(f);
            Row {
                id: r.id.clone(),
                name: r.name.clone(),
                cpu_percent: (cpu * 100.0).round() / 100.0,
                memory_usage: usage.unwrap_or(0),
                memory_limit: limit,
                pids: f
                    .pids
                    .as_ref()
                    .and_then(|d| read_u64(&d.join("pids.current")))
                    .unwrap_or(0),
            }
        })
        .collect()
}

fn print(rows: &[Row], format: Format) -> Result<()> {
    match format {
        Format::Json => {
            let text = serde_json::to_string_pretty(rows)
                .map_err(|e| Error::user(format!("encode: {e}")))?;
            println!("{text}");
        }
        Format::Table => {
            println!(
                "{:<14}{:<20}{:>8}  {:<24}{:>6}",
                "ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "PIDS"
            );
            for r in rows {
                let mem = format!(
                    "{} / {}",
                    human(r.memory_usage),
                    r.memory_limit.map_or("unlimited".into(), human)
                );
                println!(
                    "{:<14}{:<20}{:>7.2}%  {:<24}{:>6}",
                    &r.id[..12],
                    r.name,
                    r.cpu_percent,
                    mem,
                    r.pids
                );
            }
        }
    }
    Ok(())
}

/// `stats [--no-stream] [--format json|table] [CONTAINER...]`.
pub fn stats(keys: &[String], no_stream: bool, format: Format) -> Result<()> {
    let state = Records::open()?;
    loop {
        let recs = running(&state, keys)?;
        let rows = sample(&recs, Duration::from_secs(1));
        if !no_stream && format == Format::Table {
            // Clear the screen between samples, like `top`.
            print!("\x1b[2J\x1b[H");
        }
        print(&rows, format)?;
        if no_stream {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_on_a_hybrid_and_a_unified_host() {
        let hybrid = mounts(
            "32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n\
             33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
             35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n\
             39 31 0:36 / /sys/fs/cgroup/pids rw - cgroup cgroup rw,pids\n\
             41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n",
        );
        let f = files_of(
            "4:memory:/p/tw/user-1/abc\n8:pids:/tw/user-1/abc\n2:cpuacct:/tw/user-1/abc\n0::/tw/user-1/abc\n",
            &hybrid,
        );
        assert_eq!(
            f.memory,
            Some((
                PathBuf::from("/sys/fs/cgroup/memory/p/tw/user-1/abc"),
                false
            ))
        );
        assert_eq!(
            f.pids,
            Some(PathBuf::from("/sys/fs/cgroup/pids/tw/user-1/abc"))
        );
        assert_eq!(
            f.cpu,
            Some((PathBuf::from("/sys/fs/cgroup/cpuacct/tw/user-1/abc"), false))
        );
        let unified = mounts("30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        let f = files_of("0::/tw/user-1/abc\n", &unified);
        assert_eq!(
            f.cpu,
            Some((PathBuf::from("/sys/fs/cgroup/tw/user-1/abc"), true))
        );
    }

    #[test]
    fn fake_v2_tree_is_read() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        std::fs::write(d.path().join("memory.current"), "4096\n").unwrap();
        std::fs::write(d.path().join("memory.max"), "max\n").unwrap();
        let f = Files {
            memory: Some((d.path().to_path_buf(), true)),
            cpu: Some((d.path().to_path_buf(), true)),
            pids: None,
        };
        assert_eq!(cpu_ns(&f), Some(1_500_000));
        assert_eq!(memory(&f), (Some(4096), None));
        assert_eq!(human(1536), "1.50KiB");
        assert_eq!(human(100), "100B");
    }
}
