//! `top CONTAINER`: the container's processes as seen from inside: the
//! host processes whose pid namespace is the init's, with the pid of the
//! container's namespace (the last `NSpid` of `/proc/<pid>/status`), the
//! user as the container's uid, CPU time and command line.

use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};
use crate::records::{Records, Status};

/// One line of `top`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub pid: i64,
    pub uid: i64,
    /// CPU time (user + system) in seconds.
    pub seconds: u64,
    pub command: String,
}

/// `inside outside count` lines of a `uid_map`: the id inside for a host id.
pub fn map_to_inside(uid_map: &str, host: u32) -> Option<u32> {
    uid_map.lines().find_map(|l| {
        let f: Vec<u64> = l
            .split_whitespace()
            .filter_map(|w| w.parse().ok())
            .collect();
        let [inside, outside, count] = f[..] else {
            return None;
        };
        let host = u64::from(host);
        (host >= outside && host < outside + count)
            .then(|| u32::try_from(inside + host - outside).ok())
            .flatten()
    })
}

/// The last pid of the `NSpid` line (the innermost namespace's) and the
/// real uid (as the reader's namespace sees it) of a `status` file.
pub fn parse_status(status: &str) -> Option<(i64, u32)> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|r| r.split_whitespace().map(str::to_string).collect::<Vec<_>>())
    };
    let pid = field("NSpid:")?.last()?.parse().ok()?;
    let uid = field("Uid:")?.first()?.parse().ok()?;
    Some((pid, uid))
}

/// User + system time in clock ticks from a `stat` line (fields 14 and 15,
/// counted after the command in parentheses, which may hold anything).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state).
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// `HH:MM:SS` as `ps` prints times.
pub fn clock(seconds: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

fn command_line(pid: &str) -> String {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    if words.is_empty() {
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        return format!("[{}]", comm.trim());
    }
    words.join(" ")
}

/// The processes in the pid namespace of `init`, ordered by their pid in
/// it.
pub fn processes(init: i32) -> Result<Vec<Row>> {
    let ns =
        |pid: &str| std::fs::metadata(format!("/proc/{pid}/ns/pid")).map(|m| (m.dev(), m.ino()));
    let theirs =
        ns(&init.to_string()).map_err(|e| Error::io("read the container's pid namespace", e))?;
    let uid_map = std::fs::read_to_string(format!("/proc/{init}/uid_map"))
        .map_err(|e| Error::io("read the container's uid map", e))?;
    // SAFETY: sysconf has no side effects.
    let ticks = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .unwrap_or(100)
        .max(1);
    let mut rows = vec![];
    let dir = std::fs::read_dir("/proc").map_err(|e| Error::io("read /proc", e))?;
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || ns(&name).ok() != Some(theirs) {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(format!("/proc/{name}/status")) else {
            continue;
        };
        let Some((pid, host_uid)) = parse_status(&status) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{name}/stat")).unwrap_or_default();
        rows.push(Row {
            pid,
            uid: map_to_inside(&uid_map, host_uid).map_or(-1, i64::from),
            seconds: parse_cpu_ticks(&stat).unwrap_or(0) / ticks,
            command: command_line(&name),
        });
    }
    rows.sort_by_key(|r| r.pid);
    Ok(rows)
}

/// `top CONTAINER`.
pub fn top(container: &str) -> Result<()> {
    let records = Records::open()?;
    let rec = records.find(container)?;
    let not_running = || Error::user(format!("container {container} is not running"));
    if rec.status != Status::Running {
        return Err(not_running());
    }
    let init = rec.init.ok_or_else(not_running)?;
    // Held while we read, so the pid cannot name another process meanwhile.
    let _pidfd = init.pidfd().ok_or_else(not_running)?;
    println!("{:<8} {:<8} {:<10} COMMAND", "USER", "PID", "TIME");
    for r in processes(init.pid)? {
        let user = if r.uid < 0 {
            "?".into()
        } else {
            r.uid.to_string()
        };
        println!(
            "{:<8} {:<8} {:<10} {}",
            user,
            r.pid,
            clock(r.seconds),
            r.command
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_maps_translate_host_ids() {
        let map = "         0       1000          1\n         1     100000      65535\n";
        assert_eq!(map_to_inside(map, 1000), Some(0));
        assert_eq!(map_to_inside(map, 100000), Some(1));
        assert_eq!(map_to_inside(map, 100999), Some(1000));
        assert_eq!(map_to_inside(map, 165535), None);
        assert_eq!(map_to_inside(map, 0), None);
    }

    #[test]
    fn status_gives_the_innermost_pid_and_the_uid() {
        let s = "Name:\tsleep\nNSpid:\t4242\t7\nUid:\t100999\t100999\t100999\t100999\n";
        assert_eq!(parse_status(s), Some((7, 100999)));
        assert_eq!(parse_status("Name:\tx\n"), None);
    }

    #[test]
    fn cpu_time_survives_a_command_with_parentheses() {
        let stat = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 150 0 0 20 0 1 0 99";
        assert_eq!(parse_cpu_ticks(stat), Some(400));
        assert_eq!(clock(3725), "01:02:05");
    }

    #[test]
    fn our_own_pid_namespace_lists_us() {
        let me = std::process::id() as i32;
        let rows = processes(me).unwrap();
        assert!(
            rows.iter().any(|r| r.command.contains("tupper")),
            "{rows:?}"
        );
    }
}
